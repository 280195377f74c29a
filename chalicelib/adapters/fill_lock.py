"""Single flight across processes: a short-lived Redis lock per name, so one caller fills a missing cache
entry (a performance's seat map, the catalogue's Bloom filter) while the others wait for it or skip.

redis-py's Lock: SET NX PX with a random token, released by an owner-checked script. A holder that dies
leaves a lock that lapses after its lease; a holder that outlives its lease cannot free a successor's lock.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

import redis
from redis.exceptions import LockNotOwnedError
from redis.lock import Lock

from chalicelib.domain.errors import ServiceUnavailable

log = logging.getLogger(__name__)
# How often a waiter retries the lock (redis-py sleeps between SET NX attempts).
POLL_SECONDS = 0.01


class RedisFillLock:
    def __init__(self, client: redis.Redis, key_prefix: str) -> None:
        self._client = client
        self._prefix = key_prefix

    def key(self, name: str) -> str:
        return f"{self._prefix}:fill:{name}"

    @contextmanager
    def hold(self, name: str, lease_seconds: float, wait_seconds: float) -> Iterator[bool]:
        """Yield True while this caller holds the lock `name`, or False if it was not had within
        `wait_seconds` (0: one try). The lock lapses after `lease_seconds` whatever happens to the holder."""
        lock = self._client.lock(
            self.key(name),
            timeout=lease_seconds,
            sleep=POLL_SECONDS,
            blocking=wait_seconds > 0,
            blocking_timeout=wait_seconds,
            thread_local=False,
        )
        try:
            acquired = lock.acquire()
        except ServiceUnavailable:
            raise  # already the contract's answer (a guarded client's own error)
        except redis.RedisError as exc:
            raise ServiceUnavailable(f"the lock {name!r} cannot be taken: Redis is unavailable") from exc
        try:
            yield acquired
        finally:
            if acquired:
                _release(lock, name)


def _release(lock: Lock, name: str) -> None:
    try:
        lock.release()
    except LockNotOwnedError:
        # The lease ran out first (a slow fill): a second filler may have started; both publish atomically.
        log.warning("fill lock %s lapsed before its holder released it", name)
    except redis.RedisError as exc:
        log.warning("fill lock %s not released (%s); it lapses with its lease", name, exc)
