"""The process's Redis client: pooled, time-bounded, and behind a circuit breaker.

Every command (plain, Lua script, lock, pipeline) goes through `execute_command` or a pipeline's `execute`,
so guarding those two guards everything. A connection failure or timeout surfaces as RedisUnavailable — a
`redis.ConnectionError` (code that already handles Redis errors keeps working) and a CacheUnavailable (so
anything unhandled answers 503). After `failure_threshold` of them in a row the circuit opens and calls
fail at once for `reset_seconds`: a dead or hung Redis costs a request microseconds, not a socket timeout,
and no threads pile up waiting on it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import redis
from redis.client import Pipeline

from chalicelib.adapters.circuit import CircuitBreaker, CircuitOpen
from chalicelib.config import Settings
from chalicelib.domain.errors import CacheUnavailable

OUTAGE_ERRORS = (redis.ConnectionError, redis.TimeoutError)
POOL_EXHAUSTED = "No connection available."  # BlockingConnectionPool's wait ran out: busy, not down


def is_outage(exc: BaseException) -> bool:
    return isinstance(exc, OUTAGE_ERRORS) and str(exc) != POOL_EXHAUSTED


class RedisUnavailable(CacheUnavailable, redis.ConnectionError):
    def __init__(self, message: str = "the seat store (Redis) is unavailable; nothing was changed") -> None:
        CacheUnavailable.__init__(self, message)


def _guarded(breaker: CircuitBreaker, func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    try:
        return breaker.call(func, *args, **kwargs)
    except CircuitOpen as exc:
        raise RedisUnavailable() from exc
    except RedisUnavailable:
        raise
    except OUTAGE_ERRORS as exc:
        raise RedisUnavailable() from exc


class GuardedPipeline(Pipeline):
    breaker: CircuitBreaker

    def execute(self, raise_on_error: bool = True) -> list[Any]:
        return _guarded(self.breaker, super().execute, raise_on_error)


class GuardedRedis(redis.Redis):
    def __init__(self, breaker: CircuitBreaker, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.breaker = breaker

    def execute_command(self, *args: Any, **options: Any) -> Any:
        return _guarded(self.breaker, super().execute_command, *args, **options)

    def unguarded(self) -> redis.Redis:
        """The same pool without the breaker: for the probe and the recovery work of a half-open circuit."""
        return redis.Redis(connection_pool=self.connection_pool)

    def pipeline(self, transaction: bool = True, shard_hint: Any = None) -> Pipeline:
        pipe = GuardedPipeline(self.connection_pool, self.response_callbacks, transaction, shard_hint)
        pipe.breaker = self.breaker
        return pipe


def build_redis(settings: Settings) -> GuardedRedis:
    """The guarded client; its breaker probes with PING. Set `client.breaker.on_recovered` for the work to
    do (with `client.unguarded()`) before Redis is trusted again."""
    # A blocking pool: a burst of request threads waits briefly for a connection instead of failing with
    # "Too many connections" (what the default pool does past max_connections).
    pool = redis.BlockingConnectionPool.from_url(
        settings.redis_url,
        decode_responses=True,
        socket_timeout=settings.redis_socket_timeout_seconds,
        socket_connect_timeout=settings.redis_socket_timeout_seconds,
        health_check_interval=30,
        max_connections=settings.redis_pool_size,
        timeout=settings.redis_socket_timeout_seconds,
    )
    breaker = CircuitBreaker(
        "redis",
        failure_threshold=settings.redis_breaker_failures,
        reset_seconds=settings.redis_breaker_reset_seconds,
        is_failure=is_outage,
    )
    client = GuardedRedis(breaker, connection_pool=pool)
    breaker.probe = client.unguarded().ping
    return client
