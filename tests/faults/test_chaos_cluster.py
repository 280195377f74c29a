"""The chaos suite's Redis faults on a local 3-primary Redis Cluster (infra/local/redis_cluster.py, the app
with REDIS_CLUSTER=1): the same five performances, loads, sampler and checks as tests/faults/test_chaos.py,
with the outage aimed at the primary that owns the most of the five performances' slots:

    a shard crashes and comes back empty    SIGKILL, restarted 2 s later on its own port with its slots and
                                            nothing else (the cluster's other shards serve on meanwhile)
    a shard hangs                           SIGSTOP for 3 s: its clients time out, then SIGCONT

MySQL's and the worker's faults do not involve Redis' topology: they run once, in test_chaos.py."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator

import pytest

from chalicelib.config import Settings
from infra.local.redis_cluster import ClusterNode, LocalRedisCluster
from tests.faults import test_chaos as chaos_suite
from tests.faults.harness import Fault
from tests.support.cluster import ClusterAsServer

pytestmark = [pytest.mark.fault, pytest.mark.timeout(420)]


@pytest.fixture(scope="module")
def own_redis() -> Iterator[ClusterAsServer]:
    """The fault world's Redis (tests/faults/conftest.py): here a cluster of this module's own."""
    server = ClusterAsServer(LocalRedisCluster().start())
    yield server
    server.stop()


@pytest.fixture(scope="module")
def fault_settings(fault_settings: Settings) -> Settings:
    return chaos_suite.chaos_settings(fault_settings).replace(redis_cluster=True, redis_key_prefix="chaoscl")


@pytest.fixture()
def chaos(healthy: Fault) -> Iterator[Fault]:
    yield healthy
    healthy.clear_dead_letters()


def busiest_primary(run: chaos_suite.Run) -> ClusterNode:
    """The primary owning the most of the run's performances (their seat maps, records, everything)."""
    cluster = run.fault.redis_server.cluster
    seats = run.fault.container.seat_store
    owners = Counter(cluster.node_of(seats.seats_key(pid)).port for pid, _ in run.performances.values())
    port = owners.most_common(1)[0][0]
    chaos_suite.log(f"outage of the primary on port {port}: {owners[port]} of the 5 performances live there")
    return next(node for node in cluster.nodes if node.port == port)


def test_a_shard_crashes_and_comes_back_empty_mid_run(chaos: Fault) -> None:
    def crash(run: chaos_suite.Run) -> None:
        node = busiest_primary(run)
        node.kill()
        time.sleep(2)
        node.start()  # its nodes.conf: the same identity and slots; its data: gone
        run.fault.redis_server.cluster.wait_ok()

    chaos_suite.run_with(chaos, "shard-crashed", crash, during=2)


def test_a_shard_hangs_mid_run(chaos: Fault) -> None:
    def hang(run: chaos_suite.Run) -> None:
        node = busiest_primary(run)
        node.pause()
        try:
            time.sleep(3)  # every command to its slots waits (and times out) until it is over
        finally:
            node.resume()

    chaos_suite.run_with(chaos, "shard-hung", hang)
