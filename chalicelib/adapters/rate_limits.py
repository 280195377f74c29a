"""Token buckets in Redis, shared by every process (chalicelib/services/rate_limits.py decides what they
limit). One key per bucket; one script takes a token from every bucket of a request at once, all or none,
so two processes never both take the last token, and a request costs one round trip whatever it is checked
against. On a Redis Cluster the buckets of a request live on different shards: one call per bucket there
(a bucket before the refusing one may then have given its token).

Why not a library: `limits` (the well-kept one) offers fixed and moving windows, not token buckets, and
brings a Redis connection of its own: outside this codebase's guarded client (its circuit breaker, cluster
routing and key prefix). The bucket is the 25 lines of the script.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import redis

from chalicelib.domain.errors import ServiceUnavailable
from chalicelib.domain.rate_limits import Bucket

log = logging.getLogger(__name__)
TAKE_TOKENS = Path(__file__).resolve().parent / "lua" / "take_tokens.lua"


class RedisTokenBuckets:
    def __init__(
        self, client: redis.Redis, key_prefix: str, clock: Callable[[], float], one_call: bool = True
    ) -> None:
        self._prefix = key_prefix
        self.clock = clock
        self._one_call = one_call  # False on a Redis Cluster: the buckets' keys are in different slots
        # register_script: EVALSHA on every call, falling back to EVAL (which caches it) on NOSCRIPT.
        self._take = client.register_script(TAKE_TOKENS.read_text())

    def take(self, buckets: Sequence[Bucket]) -> tuple[float, int]:
        """A token of every bucket -> (0.0, -1); else (seconds until the refusing bucket has one, its index),
        nothing taken from it. Redis unavailable: (0.0, -1), the request goes on (a limiter that is down must
        not refuse bookings; the booking itself answers 503 if it needs Redis)."""
        now_ms = int(self.clock() * 1000)
        try:
            if self._one_call:
                return self._take_all(buckets, now_ms, 0)
            for index, bucket in enumerate(buckets):
                wait = self._take_all([bucket], now_ms, index)
                if wait[0] > 0:
                    return wait
            return 0.0, -1
        except (ServiceUnavailable, redis.RedisError) as exc:
            log.warning("rate limits %s not checked: %s", [b.name for b in buckets], exc)
            return 0.0, -1

    def _take_all(self, buckets: Sequence[Bucket], now_ms: int, first_index: int) -> tuple[float, int]:
        args: list[float] = [now_ms]
        for bucket in buckets:
            args += [bucket.per_seconds * 1000 / bucket.capacity, bucket.capacity]
        wait_ms, refused = self._take(keys=[f"{self._prefix}:rate:{b.name}" for b in buckets], args=args)
        if int(wait_ms) <= 0:
            return 0.0, -1
        return int(wait_ms) / 1000, first_index + int(refused) - 1
