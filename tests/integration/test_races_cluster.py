"""The races of all five strategies (tests/integration/test_races.py, the same bodies) on a local 3-primary
Redis Cluster (tests/support/cluster.py) with REDIS_CLUSTER=1: the same threads, MariaDB and queues, audited
the same way (MySQL and the Redis seat map). A script or transaction that touched two slots would fail here
with CROSSSLOT; a key routed to the wrong node, with MOVED.

The app's handlers (the queue and stream consumers `drain` delivers to) ask bootstrap for the process-wide
container: for this module it is the cluster one, and the session's own is put back afterwards."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from redis.cluster import RedisCluster, key_slot

from chalicelib import bootstrap
from chalicelib.adapters.redis_client import GuardedRedisCluster
from chalicelib.config import Settings
from infra.local.redis_cluster import LocalRedisCluster
from tests.integration import test_races as races

# The same race body, collected here again for all five strategies: its fixtures resolve to this module's
# `services`.
from tests.integration.test_races import (  # noqa: F401
    test_200_overlapping_multi_seat_bookings_never_share_a_seat,
)

pytestmark = pytest.mark.race
# The 500-thread hot seat on the cluster for the strategies that decide at request time (Redis, MySQL). For
# the two that decide in line it adds nothing the overlapping race above does not already put through the
# cluster (a record per booking, the consumer's owner-checked scripts) and costs ~2 minutes of the emulator's
# FIFO queue and stream, not of Redis.
DECIDED_AT_ONCE = ["db_lock", "redis_lock", "redis_async"]


@pytest.fixture(scope="module")
def services(
    database: str, queues, settings: Settings, redis_cluster: LocalRedisCluster, tmp_path_factory
) -> Iterator[bootstrap.Container]:
    """The app's container on the cluster, installed as the process-wide one for this module."""
    on_cluster = settings.replace(
        redis_cluster=True,
        redis_url=redis_cluster.url,
        # The session container's RocksDB ledger has one opener: this container keeps its own.
        ledger_dir=str(tmp_path_factory.mktemp("cluster-ledger") / "ledger"),
    )
    built = bootstrap.build(on_cluster)
    assert isinstance(built.redis, GuardedRedisCluster)
    session_container, bootstrap._container = bootstrap._container, built
    try:
        yield built
    finally:
        bootstrap._container = session_container
        built.db.close()
        built.redis.close()


@pytest.mark.parametrize("strategy", DECIDED_AT_ONCE)
def test_500_threads_for_one_seat_sell_it_once_on_the_cluster(
    strategy, services, new_performance, drain, sql
) -> None:
    races.test_500_threads_for_one_seat_sell_it_once(strategy, services, new_performance, drain, sql)


def test_each_performance_lives_in_one_slot_and_performances_spread_over_the_shards(
    services: bootstrap.Container, new_performance, redis_cluster: LocalRedisCluster, drain
) -> None:
    """What the races rely on: a performance's keys (seat map, change log, version, booking records) in one
    slot, performances on more than one primary, and Powertools' idempotency records kept on the cluster."""
    prefix = services.settings.redis_key_prefix
    pids = []
    for number in range(6):
        performance = new_performance(strategy="redis_async", rows=1, seats_per_row=4)
        pid, seat = performance["performance_id"], performance["sections"][0]["first_seat_id"]
        body = {"user_id": f"user-{number}", "seat_ids": [seat]}
        first = services.booking_service.book(pid, body, f"key-{number}")
        assert services.booking_service.book(pid, body, f"key-{number}") == first  # replayed from Redis
        pids.append(pid)
    drain()
    client = RedisCluster.from_url(redis_cluster.url, decode_responses=True)
    try:
        owners = set()
        for pid in pids:
            keys = list(client.scan_iter(match=f"{prefix}:{{p{pid}}}:*"))
            assert any(":booking:" in key for key in keys) and any(key.endswith(":seats") for key in keys)
            assert {key_slot(key.encode()) for key in keys} == {key_slot(keys[0].encode())}
            owners.add(redis_cluster.node_of(keys[0]).port)
        assert len(owners) > 1, "six performances all on one primary: the tags do not spread them"
        assert len(list(client.scan_iter(match=f"{prefix}:idem:*"))) >= 6
    finally:
        client.close()
