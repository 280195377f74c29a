"""The process's Redis client: pooled, time-bounded, and behind a circuit breaker.

Every command (plain, Lua script, lock, pipeline) goes through `execute_command` or a pipeline's `execute`,
so guarding those two guards everything. A connection failure or timeout surfaces as RedisUnavailable — a
`redis.ConnectionError` (code that already handles Redis errors keeps working) and a CacheUnavailable (so
anything unhandled answers 503). After `failure_threshold` of them in a row the circuit opens and calls
fail at once for `reset_seconds`: a dead or hung Redis costs a request microseconds, not a socket timeout,
and no threads pile up waiting on it.

With REDIS_CLUSTER=1 the same guard wraps redis-py's RedisCluster (REDIS_URL a seed node): one blocking pool
per node, and the cluster's own failures (the cluster down, a slot no node covers) count as outages too.
One breaker for the whole cluster: a shard that stops answering opens it for every performance, as one Redis
would; the probe (PING, any node) closes it again once a node answers, and the next failures reopen it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import redis
from redis.backoff import ExponentialBackoff
from redis.client import Pipeline
from redis.cluster import ClusterPipeline, RedisCluster
from redis.exceptions import ClusterDownError, ClusterError, MaxConnectionsError, SlotNotCoveredError
from redis.retry import Retry

from chalicelib.adapters.circuit import CircuitBreaker, CircuitOpen
from chalicelib.config import Settings
from chalicelib.domain.errors import CacheUnavailable

# ClusterError: the cluster client ran out of redirections/retries; ClusterDownError: the cluster refuses
# (CLUSTERDOWN: a shard lost); SlotNotCoveredError: no known node serves the key's slot.
OUTAGE_ERRORS = (
    redis.ConnectionError,
    redis.TimeoutError,
    ClusterDownError,
    ClusterError,
    SlotNotCoveredError,
)
POOL_EXHAUSTED = "No connection available."  # BlockingConnectionPool's wait ran out: busy, not down
# The cluster client sends no command twice. Its retry re-sends a command whose connection failed or timed
# out, and the first may have been carried out with only its reply lost: a SET NX that then reads "taken" by
# its own write (Powertools answered 409 IDEMPOTENCY_IN_PROGRESS to a request sent once, the chaos suite's
# shard crash), a take script that finds the seats held by its own booking. As on the single-node client, the
# failure surfaces (RedisUnavailable, 503: the outcome is not known) and the client has already refreshed its
# slot map for the next request.
CLUSTER_RETRIES = 0


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


class _ClusterPool(redis.BlockingConnectionPool):
    """A node's blocking pool whose exhausted wait raises MaxConnectionsError (a ConnectionError, so callers
    see what they see without cluster mode): the cluster client treats that as "busy" and leaves the node
    alone, where a plain ConnectionError would make it drop the node's connections and refresh the slot map
    under load."""

    def get_connection(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().get_connection(*args, **kwargs)
        except MaxConnectionsError:
            raise
        except redis.ConnectionError as exc:
            if str(exc) == POOL_EXHAUSTED:
                raise MaxConnectionsError(POOL_EXHAUSTED) from exc
            raise


class GuardedClusterPipeline(ClusterPipeline):
    breaker: CircuitBreaker

    def execute(self, raise_on_error: bool = True) -> list[Any]:
        return _guarded(self.breaker, super().execute, raise_on_error)


class _UnguardedCluster(RedisCluster):
    """A guarded cluster client's state without its breaker (see GuardedRedisCluster.unguarded). It shares
    the client's nodes and pools, so it must never close them when it goes away."""

    def __del__(self) -> None:
        pass


class GuardedRedisCluster(RedisCluster):
    def __init__(self, breaker: CircuitBreaker, **kwargs: Any) -> None:
        self.breaker = breaker  # first: the constructor already sends commands (COMMAND, CLUSTER SLOTS)
        super().__init__(**kwargs)

    def execute_command(self, *args: Any, **options: Any) -> Any:
        return _guarded(self.breaker, super().execute_command, *args, **options)

    def unguarded(self) -> RedisCluster:
        """The same nodes and pools without the breaker (the probe, and a half-open circuit's recovery)."""
        view = object.__new__(_UnguardedCluster)
        view.__dict__ = self.__dict__  # one state: slot map refreshes made by either serve both
        return view

    def pipeline(self, transaction: Any = None, shard_hint: Any = None) -> ClusterPipeline:
        if shard_hint:
            raise redis.RedisError("shard_hint is not supported in cluster mode")
        pipe = GuardedClusterPipeline(
            nodes_manager=self.nodes_manager,
            commands_parser=self.commands_parser,
            startup_nodes=self.nodes_manager.startup_nodes,
            result_callbacks=self.result_callbacks,
            cluster_response_callbacks=self.cluster_response_callbacks,
            read_from_replicas=self.read_from_replicas,
            load_balancing_strategy=self.load_balancing_strategy,
            reinitialize_steps=self.reinitialize_steps,
            retry=self.retry,
            lock=self._lock,
            transaction=transaction,
            event_dispatcher=self._event_dispatcher,
        )
        pipe.breaker = self.breaker
        return pipe


def _breaker(settings: Settings) -> CircuitBreaker:
    return CircuitBreaker(
        "redis",
        failure_threshold=settings.redis_breaker_failures,
        reset_seconds=settings.redis_breaker_reset_seconds,
        is_failure=is_outage,
    )


def build_redis_cluster(settings: Settings) -> GuardedRedisCluster:
    """The guarded cluster client (REDIS_CLUSTER=1): REDIS_URL names a seed node; the same timeouts, and one
    blocking pool of `redis_pool_size` connections per node."""
    breaker = _breaker(settings)
    client = GuardedRedisCluster(
        breaker,
        url=settings.redis_url,
        decode_responses=True,
        socket_timeout=settings.redis_socket_timeout_seconds,
        socket_connect_timeout=settings.redis_socket_timeout_seconds,
        # (no health_check_interval: the cluster client drops it; a dead connection is a ConnectionError,
        # after which it reconnects and refreshes the slot map itself)
        max_connections=settings.redis_pool_size,
        connection_pool_class=_ClusterPool,
        timeout=settings.redis_socket_timeout_seconds,
        retry=Retry(ExponentialBackoff(cap=0.1, base=0.01), CLUSTER_RETRIES),
        # A cluster with a shard down still serves the other shards' slots (the server's
        # cluster-require-full-coverage decides; ElastiCache's default is yes).
        require_full_coverage=False,
    )
    breaker.probe = client.unguarded().ping
    return client


def build_redis(settings: Settings) -> GuardedRedis | GuardedRedisCluster:
    """The guarded client (a cluster client with REDIS_CLUSTER=1); its breaker probes with PING. Set
    `client.breaker.on_recovered` for the work to do (with `client.unguarded()`) before Redis is trusted
    again."""
    if settings.redis_cluster:
        return build_redis_cluster(settings)
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
    breaker = _breaker(settings)
    client = GuardedRedis(breaker, connection_pool=pool)
    breaker.probe = client.unguarded().ping
    return client
