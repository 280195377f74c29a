"""The token buckets (chalicelib/adapters/lua/take_tokens.lua) against the real Redis, with a clock the test
moves: capacity, refill to the millisecond, one bucket shared by two clients (two processes), a request's
buckets taken all or none in one call, the same on a Redis Cluster (one call per bucket), and nothing left in
Redis by a bucket that is full again."""

from __future__ import annotations

import uuid

import pytest
import redis

from chalicelib.adapters.rate_limits import RedisTokenBuckets
from chalicelib.domain.errors import RateLimited
from chalicelib.domain.rate_limits import Bucket
from chalicelib.services.rate_limits import BookingWriteLimits, Rate
from tests.support.clock import FakeClock

ANN = Bucket("user:ann", 20, 10.0)


@pytest.fixture()
def clock() -> FakeClock:
    return FakeClock(1_800_000_000.0)


@pytest.fixture()
def prefix(settings) -> str:
    return f"{settings.redis_key_prefix}-{uuid.uuid4().hex[:8]}"


@pytest.fixture()
def two_processes(settings, prefix, clock) -> tuple[RedisTokenBuckets, RedisTokenBuckets]:
    """Two limiters, each with a Redis connection of its own, as two server processes have."""
    return tuple(RedisTokenBuckets(redis.Redis.from_url(settings.redis_url), prefix, clock) for _ in range(2))  # type: ignore[return-value]


def test_a_bucket_gives_its_capacity_then_one_token_per_interval(two_processes, clock) -> None:
    first, second = two_processes
    taken = [(first, second)[i % 2].take([ANN]) for i in range(20)]
    assert taken == [(0.0, -1)] * 20, "a full bucket: 20 at once, from either process"
    assert first.take([ANN]) == (0.5, 0), "then one per 10 s / 20"
    assert second.take([ANN]) == (0.5, 0), "a refusal takes nothing"
    clock.advance(0.499)
    assert first.take([ANN]) == (0.001, 0)
    clock.advance(0.001)
    assert second.take([ANN]) == (0.0, -1)
    assert first.take([ANN]) == (0.5, 0)
    assert first.take([Bucket("user:bob", 20, 10.0)]) == (0.0, -1), "another bucket"


def test_an_idle_bucket_fills_to_its_capacity_and_no_further(two_processes, clock) -> None:
    first, second = two_processes
    for _ in range(20):
        first.take([ANN])
    clock.advance(3600)  # an hour idle: still only 20
    assert [second.take([ANN]) for _ in range(21)][-2:] == [(0.0, -1), (0.5, 0)]


@pytest.mark.parametrize("one_call", [True, False], ids=["one-call", "cluster-one-call-per-bucket"])
def test_a_requests_buckets_name_the_one_that_refused(settings, prefix, clock, one_call) -> None:
    buckets = RedisTokenBuckets(redis.Redis.from_url(settings.redis_url), prefix, clock, one_call=one_call)
    address, user = Bucket("address:203.0.113.7", 3, 1.0), Bucket("user:ann", 2, 10.0)
    assert [buckets.take([address, user]) for _ in range(2)] == [(0.0, -1)] * 2
    assert buckets.take([address, user]) == (5.0, 1), "the user's bucket is empty"
    if one_call:  # all or none: the refused request left the address its last token
        assert buckets.take([address]) == (0.0, -1)
    # On a cluster the refused request had already taken it (one call per bucket, documented).
    assert buckets.take([address, user]) == (pytest.approx(1 / 3, abs=0.001), 0)


def test_all_or_none_a_refused_request_takes_from_no_bucket(settings, prefix, clock) -> None:
    buckets = RedisTokenBuckets(redis.Redis.from_url(settings.redis_url), prefix, clock)
    address, user = Bucket("address:203.0.113.8", 3, 1.0), Bucket("user:cy", 1, 10.0)
    buckets.take([user])
    for _ in range(5):
        assert buckets.take([address, user])[1] == 1
    assert [buckets.take([address]) for _ in range(4)][-2:] == [
        (0.0, -1),
        (pytest.approx(1 / 3, abs=0.001), 0),
    ]


def test_a_full_bucket_leaves_no_key_behind(settings, prefix, clock, redis_client) -> None:
    """The key expires when the bucket would be full again: an idle user costs Redis nothing."""
    RedisTokenBuckets(redis.Redis.from_url(settings.redis_url), prefix, clock).take([ANN])
    assert 0 < redis_client.pttl(f"{prefix}:rate:user:ann") <= 500


def test_the_limits_answer_rate_limited_with_the_wait_and_which_limit(two_processes) -> None:
    limits = BookingWriteLimits(two_processes[0], per_user=Rate(2, 10.0), per_address=Rate(3, 1.0))
    limits.check("ann", "203.0.113.9")
    limits.check("ann", "203.0.113.9")
    with pytest.raises(RateLimited) as refused:
        limits.check("ann", "203.0.113.9")
    assert refused.value.retry_after == 5.0 and refused.value.extra["limit"] == "user"
    assert refused.value.headers == {"Retry-After": "5"}
    limits.check("bob", "203.0.113.9")
    with pytest.raises(RateLimited) as refused:
        limits.check("cy", "203.0.113.9")
    assert refused.value.extra["limit"] == "address"
    assert refused.value.headers == {"Retry-After": "1"}, "at least a second: Retry-After is whole seconds"
    unlimited = BookingWriteLimits(two_processes[0], per_user=Rate(0, 10.0), per_address=Rate(0, 1.0))
    for _ in range(100):
        unlimited.check("ann", "203.0.113.9")
