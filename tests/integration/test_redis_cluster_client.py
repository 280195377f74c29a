"""REDIS_CLUSTER=1's client (adapters/redis_client.py) against a real 3-primary cluster of this module's own:
the same guard as the single-node client (a lost shard is RedisUnavailable, the breaker opens and recovers),
a busy pool is not an outage, and the eviction policy is checked on every primary."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis
from redis.exceptions import CrossSlotTransactionError

from chalicelib.adapters.bloom import SPARSE_SHARE, RedisBloomFilter
from chalicelib.adapters.redis_client import GuardedRedisCluster, RedisUnavailable, build_redis, is_outage
from chalicelib.adapters.redis_policy import RedisMisconfigured, require_noeviction
from chalicelib.config import Settings
from infra.local.redis_cluster import LocalRedisCluster
from tests.support.waiting import wait_for

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalRedisCluster]:
    own = LocalRedisCluster().start()  # nodes are killed here: not the session's cluster
    yield own
    own.stop()


@pytest.fixture()
def client(cluster: LocalRedisCluster, settings: Settings) -> Iterator[GuardedRedisCluster]:
    on_cluster = settings.replace(
        redis_cluster=True,
        redis_url=cluster.url,
        redis_breaker_failures=2,
        redis_breaker_reset_seconds=0.5,
        redis_socket_timeout_seconds=0.5,
        redis_pool_size=2,
    )
    built = build_redis(on_cluster)
    assert isinstance(built, GuardedRedisCluster)
    yield built
    built.close()


def test_a_lost_shard_is_an_outage_the_breaker_opens_on_and_recovers_from(
    cluster: LocalRedisCluster, client: GuardedRedisCluster
) -> None:
    key = "t:{p7}:seats"
    client.hset(key, "1", "0")
    node = cluster.node_of(key)
    node.kill()
    try:
        for _ in range(2):
            with pytest.raises(RedisUnavailable):
                client.hget(key, "1")
        assert client.breaker.state == "open"
        with pytest.raises(RedisUnavailable):  # refused at once, without touching the network
            client.pipeline(transaction=True).get(key).execute()
    finally:
        node.start()
        cluster.wait_ok()

    def answers() -> bool:
        try:
            return client.hget(key, "1") is None  # back, empty (no persistence)
        except RedisUnavailable:
            return False

    wait_for(answers, 20, "the cluster client to recover", 0.1)
    assert client.breaker.state == "closed"


def test_a_transaction_stays_in_one_slot_and_a_cross_slot_one_is_refused(client: GuardedRedisCluster) -> None:
    same = client.pipeline(transaction=True)
    same.set("t:{p8}:version", 3).hset("t:{p8}:seats", "1", "0").get("t:{p8}:version")
    # (SET's reply: "OK" in a cluster transaction, True elsewhere; no caller reads a write's reply.)
    assert same.execute()[1:] == [1, "3"]
    crossing = client.pipeline(transaction=True)
    crossing.get("t:{p8}:version").get("t:{p9}:version")
    with pytest.raises(CrossSlotTransactionError):
        crossing.execute()
    assert client.breaker.state == "closed"  # a programming error is no outage


def test_a_busy_pool_is_not_an_outage(client: GuardedRedisCluster, cluster: LocalRedisCluster) -> None:
    """Every connection of a node's pool (2 here) in use: the next caller waits, then fails as busy, and the
    breaker does not count it."""
    key = "t:{p10}:seats"
    client.set(key, 1)
    node = client.get_node_from_key(key)
    pool = node.redis_connection.connection_pool
    held = [pool.get_connection() for _ in range(2)]
    try:
        with pytest.raises(redis.ConnectionError) as raised:
            client.get(key)
        assert not is_outage(raised.value.__cause__ or raised.value)
        assert client.breaker.state == "closed"
    finally:
        for connection in held:
            pool.release(connection)
    assert client.get(key) == "1"


def test_the_eviction_policy_is_checked_on_every_primary(
    client: GuardedRedisCluster, cluster: LocalRedisCluster
) -> None:
    require_noeviction(client.unguarded())
    last = cluster.nodes[-1].client()
    last.config_set("maxmemory-policy", "allkeys-lru")
    try:
        with pytest.raises(RedisMisconfigured, match="allkeys-lru"):
            require_noeviction(client.unguarded())
    finally:
        last.config_set("maxmemory-policy", "noeviction")


def test_the_catalogue_filter_takes_a_big_event_in_one_merge(client: GuardedRedisCluster) -> None:
    """Past m/SPARSE_SHARE bit positions the filter ORs a local bitmap into the live one (BITOP, with a
    scratch key of the same slot): the path of a 5,000-seat event, which answered 500 on the cluster."""
    bloom = RedisBloomFilter(client, "t-merge", expected_items=1_000, false_positive_rate=0.01)
    seats = range(1, bloom.bits // SPARSE_SHARE + 2)  # k positions each: well past the sparse share
    bloom.add(("seat", seat) for seat in seats)
    bloom.mark_built()
    assert bloom.is_built()
    assert bloom.absent("seat", list(seats)) == set(), "every seat added is known"
    assert client.keys(f"{bloom.key}:merging:*") == [], "the scratch bitmap is gone"


def test_a_command_whose_reply_is_lost_is_not_sent_again(
    client: GuardedRedisCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The node carries out a SET NX and its reply is lost (a timeout, a connection reset): sending it again
    would read the client's own write as someone else's ("not set"). The outcome is unknown, so it is an
    outage answer (503), never a wrong one."""
    key = "t:{p10}:idem"
    lost: list[object] = []  # the connections whose next reply is lost (once)
    real_send, real_read = redis.connection.Connection.send_command, redis.connection.Connection.read_response

    def send_command(self, *args, **kwargs):
        if args[0] == "SET" and not lost:
            lost.append(self)
        return real_send(self, *args, **kwargs)

    def read_response(self, *args, **kwargs):
        reply = real_read(self, *args, **kwargs)
        if lost and lost[0] is self:
            lost[0] = None  # once
            raise redis.TimeoutError("reply lost after the node carried the command out")
        return reply

    monkeypatch.setattr(redis.connection.Connection, "send_command", send_command)
    monkeypatch.setattr(redis.connection.Connection, "read_response", read_response)
    with pytest.raises(RedisUnavailable):
        client.set(key, "mine", nx=True)
    monkeypatch.undo()
    assert client.get(key) == "mine", "precondition: the node did set it"
    assert client.set(key, "another's", nx=True) is None, "a second SET NX is refused, as it should be"
