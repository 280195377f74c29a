"""A local Redis Cluster of its own: N primaries (3 by default, no replicas) on free ports in a temp dir, for
the tests (REDIS_CLUSTER=1 against it) and the bench (`--redis-cluster`). Nothing persists: a node restarted
after a kill comes back empty, as a replaced node does.

    with LocalRedisCluster() as cluster:      # started, every node reporting cluster_state:ok
        cluster.url                            # a seed node's URL: REDIS_URL with REDIS_CLUSTER=1
        node = cluster.node_of("bk:{p42}:seats")   # the primary that owns the key's slot
        node.kill(); node.restart()            # chaos: a crash (comes back empty, same slots) ...
        node.pause(); node.resume()            # ... or a hang (SIGSTOP/SIGCONT)

`python -m infra.local.redis_cluster` starts one and prints its seed URL until Ctrl-C.

Nodes run with `cluster-require-full-coverage no`: while one shard is away the others keep serving their
slots, and a short `cluster-node-timeout` so a lost node is noticed within seconds.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import redis
from redis.cluster import key_slot

CLUSTER_BUS_OFFSET = 10_000  # Redis Cluster's bus listens on port + 10000
NODE_TIMEOUT_MS = 2_000
START_SECONDS = 20.0


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_cluster_port(taken: set[int]) -> int:
    """A port whose cluster bus port (+10000) is free too, not among `taken`."""
    for _ in range(200):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        bus = port + CLUSTER_BUS_OFFSET
        if port in taken or bus > 65_535 or bus in taken or not _port_free(bus):
            continue
        return port
    raise RuntimeError("no free port pair for a cluster node")


def _redis_server() -> str:
    return shutil.which("redis-server") or "/usr/bin/redis-server"


def _redis_cli() -> str:
    return shutil.which("redis-cli") or "/usr/bin/redis-cli"


class ClusterNode:
    """One redis-server of the cluster; kill/restart and pause/resume for chaos."""

    def __init__(self, port: int, directory: Path) -> None:
        self.port = port
        self.url = f"redis://127.0.0.1:{port}/0"
        self._dir = directory
        self._process: subprocess.Popen | None = None

    def start(self) -> ClusterNode:
        self._dir.mkdir(parents=True, exist_ok=True)
        self._process = subprocess.Popen(
            [
                _redis_server(),
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                "nodes.conf",
                "--cluster-node-timeout",
                str(NODE_TIMEOUT_MS),
                "--cluster-require-full-coverage",
                "no",
                "--save",
                "",
                "--appendonly",
                "no",
                "--maxmemory-policy",
                "noeviction",
                "--dir",
                str(self._dir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + START_SECONDS
        while not self._answers():
            if time.monotonic() > deadline or self._process.poll() is not None:
                raise RuntimeError(f"redis-server (cluster node) on port {self.port} did not start")
            time.sleep(0.05)
        return self

    def client(self) -> redis.Redis:
        return redis.Redis(
            port=self.port, socket_connect_timeout=0.5, socket_timeout=2, decode_responses=True
        )

    def _answers(self) -> bool:
        try:
            return bool(self.client().ping())
        except redis.ConnectionError:
            return False

    def cluster_state(self) -> str | None:
        try:
            return self.client().cluster("info").get("cluster_state")
        except redis.RedisError:
            return None

    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def kill(self) -> None:
        """SIGKILL: the node vanishes mid-whatever, as in a crash."""
        if self.running():
            self._process.send_signal(signal.SIGCONT)
            self._process.send_signal(signal.SIGKILL)
            self._process.wait(timeout=10)

    def restart(self) -> None:
        """Start again after a kill: its nodes.conf keeps its identity and slots, its data is gone."""
        self.kill()
        self.start()

    def pause(self) -> None:
        """SIGSTOP: the node hangs (accepts, answers nothing), as a stuck node does."""
        if self.running():
            self._process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        if self.running():
            self._process.send_signal(signal.SIGCONT)


class LocalRedisCluster:
    def __init__(self, primaries: int = 3) -> None:
        if primaries < 3:
            raise ValueError("redis-cli --cluster create needs at least 3 primaries")
        self._dir = Path(tempfile.mkdtemp(prefix="redis-cluster-"))
        ports: set[int] = set()
        self.nodes: list[ClusterNode] = []
        for index in range(primaries):
            port = free_cluster_port(ports)
            ports |= {port, port + CLUSTER_BUS_OFFSET}
            self.nodes.append(ClusterNode(port, self._dir / f"node-{index}"))

    @property
    def url(self) -> str:
        """A seed node's URL (REDIS_URL with REDIS_CLUSTER=1)."""
        return self.nodes[0].url

    def start(self) -> LocalRedisCluster:
        try:
            for node in self.nodes:
                node.start()
            subprocess.run(
                [
                    _redis_cli(),
                    "--cluster",
                    "create",
                    *(f"127.0.0.1:{node.port}" for node in self.nodes),
                    "--cluster-replicas",
                    "0",
                    "--cluster-yes",
                ],
                check=True,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                timeout=START_SECONDS,
            )
            self.wait_ok()
        except BaseException:
            self.stop()
            raise
        return self

    def wait_ok(self, timeout: float = START_SECONDS) -> None:
        """Until every running node reports cluster_state:ok."""
        deadline = time.monotonic() + timeout
        while not all(node.cluster_state() == "ok" for node in self.nodes if node.running()):
            if time.monotonic() > deadline:
                states = {node.port: node.cluster_state() for node in self.nodes}
                raise RuntimeError(f"the local Redis Cluster is not ok: {states}")
            time.sleep(0.05)

    def node_of(self, key: str) -> ClusterNode:
        """The primary that owns `key`'s slot."""
        slot = key_slot(key.encode())
        for node in self.nodes:
            if not node.running():
                continue
            for start, end, *owner in node.client().cluster("slots") or []:
                if start <= slot <= end:
                    port = int(owner[0][1])
                    return next(candidate for candidate in self.nodes if candidate.port == port)
        raise RuntimeError(f"no running node knows who owns slot {slot}")

    def flushall(self) -> None:
        for node in self.nodes:
            if node.running():
                node.client().flushall()

    def stop(self) -> None:
        for node in self.nodes:
            node.kill()
        shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> LocalRedisCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main() -> None:
    with LocalRedisCluster() as cluster:
        print(f"Redis Cluster up: REDIS_CLUSTER=1 REDIS_URL={cluster.url} (Ctrl-C stops it)", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            while True:
                time.sleep(3600)


if __name__ == "__main__":
    main()
