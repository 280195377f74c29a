"""The tests' local Redis Cluster (infra/local/redis_cluster.py: 3 primaries on ports of their own), and a
container of the app built on it (REDIS_CLUSTER=1), for the race and chaos suites' cluster variants."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from infra.local.redis_cluster import LocalRedisCluster


class ClusterAsServer:
    """The cluster seen as the one Redis server the fault harness knows (tests/support/servers.RedisServer):
    `url` is a seed node; `running`/`start` bring back any node a scenario killed or paused."""

    def __init__(self, cluster: LocalRedisCluster) -> None:
        self.cluster = cluster
        self.url = cluster.url

    def running(self) -> bool:
        return all(node.running() for node in self.cluster.nodes) and self._all_ok()

    def _all_ok(self) -> bool:
        return all(node.cluster_state() == "ok" for node in self.cluster.nodes)

    def start(self) -> ClusterAsServer:
        for node in self.cluster.nodes:
            node.resume()
            if not node.running():
                node.start()
        self.cluster.wait_ok()
        return self

    def kill(self) -> None:
        for node in self.cluster.nodes:
            node.kill()

    def stop(self) -> None:
        self.cluster.stop()


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[LocalRedisCluster]:
    """One local cluster per test session (started on first use, ~4 s), shared by the cluster variants."""
    cluster = LocalRedisCluster().start()
    yield cluster
    cluster.stop()
