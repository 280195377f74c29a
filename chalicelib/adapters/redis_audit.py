"""The reconcile job's view of the Redis seat maps (see adapters/redis_seats.py for the layout): a
performance's whole map with its version in one atomic read, which maps exist, and the version of each map
the job last found clean, so a pass skips maps that have not changed since.

    bk:reconcile:checked   HASH performance id -> seat map version last found clean
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import redis

from chalicelib.adapters.redis_seats import RedisSeatStore

SCAN_COUNT = 1_000
READ_CHUNK = 1_000


class RedisSeatMapAudit:
    def __init__(self, client: redis.Redis, seats: RedisSeatStore, key_prefix: str) -> None:
        self._client = client
        self._seats = seats
        self._checked_key = f"{key_prefix}:reconcile:checked"
        # Version keys look like bk:{p42}:version (RedisSeatStore.version_key); SCAN's glob treats braces
        # literally, the regex then takes the id out.
        self._version_glob = f"{key_prefix}:{{p*}}:version"
        self._version_key = re.compile(re.escape(f"{key_prefix}:{{p") + r"(\d+)\}:version")

    def snapshot(self, performance_id: int) -> tuple[int, dict[int, str] | None]:
        read = self._client.pipeline(transaction=True)
        read.get(self._seats.version_key(performance_id))
        read.hgetall(self._seats.seats_key(performance_id))
        version, raw = read.execute()
        states = {int(seat): state for seat, state in raw.items()} if raw else None
        return int(version or 0), states

    def states_of(self, performance_id: int, seat_ids: Iterable[int]) -> dict[int, str | None]:
        seats = list(seat_ids)
        if not seats:
            return {}
        states = self._client.hmget(self._seats.seats_key(performance_id), seats)
        return dict(zip(seats, states, strict=True))

    def loaded_performances(self) -> dict[int, int]:
        keys = [
            key
            for key in self._client.scan_iter(match=self._version_glob, count=SCAN_COUNT)
            if self._version_key.fullmatch(key)
        ]
        versions: dict[int, int] = {}
        for start in range(0, len(keys), READ_CHUNK):
            chunk = keys[start : start + READ_CHUNK]
            # One GET per key in a pipeline (one round trip per node), not an MGET: each performance's version
            # key lives in its own cluster slot, and a multi-key command must stay within one.
            read = self._client.pipeline(transaction=False)
            for key in chunk:
                read.get(key)
            for key, version in zip(chunk, read.execute(), strict=True):
                if version is not None:  # deleted since the scan
                    versions[int(self._version_key.fullmatch(key).group(1))] = int(version)
        return versions

    def checked_versions(self) -> dict[int, int]:
        return {int(p): int(v) for p, v in self._client.hgetall(self._checked_key).items()}

    def remember_checked(self, performance_id: int, version: int) -> None:
        self._client.hset(self._checked_key, str(performance_id), str(version))
