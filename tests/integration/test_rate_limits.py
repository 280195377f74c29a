"""The token bucket (chalicelib/adapters/lua/take_token.lua) against the real Redis, with a clock the test
moves: its capacity, its refill rate to the millisecond, one bucket shared by two clients (two processes),
and nothing left in Redis by a bucket that is full again."""

from __future__ import annotations

import uuid

import pytest
import redis

from chalicelib.adapters.rate_limits import RedisTokenBuckets
from chalicelib.domain.errors import RateLimited
from chalicelib.services.rate_limits import BookingWriteLimits, Rate
from tests.support.clock import FakeClock


@pytest.fixture()
def clock() -> FakeClock:
    return FakeClock(1_800_000_000.0)


@pytest.fixture()
def two_processes(settings, clock: FakeClock) -> tuple[RedisTokenBuckets, RedisTokenBuckets]:
    """Two limiters, each with a Redis connection of its own, as two server processes have."""
    prefix = f"{settings.redis_key_prefix}-{uuid.uuid4().hex[:8]}"
    return tuple(RedisTokenBuckets(redis.Redis.from_url(settings.redis_url), prefix, clock) for _ in range(2))  # type: ignore[return-value]


def test_a_bucket_gives_its_capacity_then_one_token_per_interval(two_processes, clock) -> None:
    first, second = two_processes
    taken = [(first, second)[i % 2].take("user:ann", 20, 10.0) for i in range(20)]
    assert taken == [0.0] * 20, "a full bucket: 20 at once, from either process"
    assert first.take("user:ann", 20, 10.0) == 0.5, "then one per 10 s / 20"
    assert second.take("user:ann", 20, 10.0) == 0.5, "a refusal takes nothing"
    clock.advance(0.499)
    assert first.take("user:ann", 20, 10.0) == 0.001
    clock.advance(0.001)
    assert second.take("user:ann", 20, 10.0) == 0.0
    assert first.take("user:ann", 20, 10.0) == 0.5
    assert first.take("user:bob", 20, 10.0) == 0.0, "another bucket"


def test_an_idle_bucket_fills_to_its_capacity_and_no_further(two_processes, clock, redis_client) -> None:
    first, second = two_processes
    for _ in range(20):
        first.take("user:ann", 20, 10.0)
    clock.advance(3600)  # an hour idle: still only 20
    assert [second.take("user:ann", 20, 10.0) for _ in range(21)][-2:] == [0.0, 0.5]


def test_a_full_bucket_leaves_no_key_behind(settings, clock, redis_client) -> None:
    """The key expires when the bucket would be full again: an idle user costs Redis nothing."""
    prefix = f"{settings.redis_key_prefix}-{uuid.uuid4().hex[:8]}"
    buckets = RedisTokenBuckets(redis.Redis.from_url(settings.redis_url), prefix, clock)
    buckets.take("user:ann", 20, 10.0)
    key = f"{prefix}:rate:user:ann"
    assert 0 < redis_client.pttl(key) <= 500


def test_the_limits_answer_rate_limited_with_the_wait_and_which_limit(two_processes) -> None:
    limits = BookingWriteLimits(two_processes[0], per_user=Rate(2, 10.0), per_address=Rate(3, 1.0))
    limits.check_user("ann")
    limits.check_user("ann")
    with pytest.raises(RateLimited) as refused:
        limits.check_user("ann")
    assert refused.value.retry_after == 5.0 and refused.value.extra["limit"] == "user"
    assert refused.value.headers == {"Retry-After": "5"}
    for _ in range(3):
        limits.check_address("203.0.113.7")
    with pytest.raises(RateLimited) as refused:
        limits.check_address("203.0.113.7")
    assert refused.value.headers == {"Retry-After": "1"}, "at least a second: Retry-After is whole seconds"
    unlimited = BookingWriteLimits(two_processes[0], per_user=Rate(0, 10.0), per_address=Rate(0, 1.0))
    for _ in range(100):
        unlimited.check_user("ann")
