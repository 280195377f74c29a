"""Token buckets in Redis, shared by every process (chalicelib/services/rate_limits.py decides what they
limit). One key per bucket, taken from by one script (lua/take_token.lua), so two processes never both take
the last token.

Why not a library: `limits` (the well-kept one) offers fixed and moving windows, not token buckets, and
brings a Redis connection of its own: outside this codebase's guarded client (its circuit breaker, cluster
routing and key prefix). The bucket is the 20 lines of the script.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import redis

from chalicelib.domain.errors import ServiceUnavailable

log = logging.getLogger(__name__)
TAKE_TOKEN = Path(__file__).resolve().parent / "lua" / "take_token.lua"


class RedisTokenBuckets:
    def __init__(self, client: redis.Redis, key_prefix: str, clock: Callable[[], float]) -> None:
        self._prefix = key_prefix
        self.clock = clock
        # register_script: EVALSHA on every call, falling back to EVAL (which caches it) on NOSCRIPT.
        self._take = client.register_script(TAKE_TOKEN.read_text())

    def take(self, bucket: str, capacity: int, per_seconds: float) -> float:
        """One token of `bucket` (capacity tokens, refilled evenly over per_seconds) -> 0.0 when taken, else
        the seconds until one is back. Redis unavailable: 0.0, the request goes on (a limiter that is down
        must not refuse bookings; the booking itself answers 503 if it needs Redis)."""
        interval_ms = per_seconds * 1000 / capacity
        try:
            wait_ms = self._take(
                keys=[f"{self._prefix}:rate:{bucket}"], args=[int(self.clock() * 1000), interval_ms, capacity]
            )
        except (ServiceUnavailable, redis.RedisError) as exc:
            log.warning("rate limit %s not checked: %s", bucket, exc)
            return 0.0
        return int(wait_ms) / 1000
