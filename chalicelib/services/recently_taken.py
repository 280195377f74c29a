"""Seats this process was just told are taken, remembered for a fraction of a second: the hot seat's refusals
answered from memory, without a round trip to Redis.

In a rush for one seat nearly every request is refused, and before this each refusal cost a Redis round trip
(a HMGET of the seat map, or the redis_async take) whose client-side work alone was several times a `/ping`
(`make bench`, issue 16). A refusal is an answer about a moment that has already passed by the time the
client reads it; this memo widens that moment by `ttl_seconds` (RECENTLY_TAKEN_SECONDS, 0.25 s by default:
the seat map's own render bound, SEAT_MAP_RENDER_SECONDS). The cost of the trade: a seat freed (a cancel
made by another process, a failed or rejected booking, a repair) may be refused by a process that refused it
just before, for at most that long; a cancel made by this process forgets its seats at once.

It only ever refuses. Every acceptance still goes through the strategy (Redis, MySQL): no seat can be
promised twice because of it. 0 turns it off.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping

# Bounds the memory of a process that refuses very many distinct seats: past this many, expired entries are
# dropped, and if that is not enough, everything (a memo that forgets only costs the round trips it saved).
MAX_REMEMBERED_SEATS = 100_000


class RecentlyTaken:
    """(performance, seat) -> (the booking shown holding it, or None; when the memory lapses). Read and
    written by many request threads without a lock: each step is one dict operation (atomic under the GIL),
    and a lost race only loses a memory, never invents one."""

    def __init__(
        self,
        ttl_seconds: float,
        clock: Callable[[], float] = time.monotonic,
        max_seats: int = MAX_REMEMBERED_SEATS,
    ) -> None:
        self.ttl_seconds = ttl_seconds
        self._clock = clock
        self._max_seats = max_seats
        self._seats: dict[tuple[int, int], tuple[str | None, float]] = {}

    def taken_among(self, performance_id: int, seat_ids: Iterable[int]) -> dict[int, str | None]:
        """The requested seats remembered taken -> the booking shown holding each (None if not known)."""
        if not self._seats:
            return {}
        now = self._clock()
        taken: dict[int, str | None] = {}
        for seat in seat_ids:
            remembered = self._seats.get((performance_id, seat))
            if remembered is not None and remembered[1] > now:
                taken[seat] = remembered[0]
        return taken

    def remember(
        self,
        performance_id: int,
        seat_ids: Iterable[int],
        holders: Mapping[int, str] | None = None,
        for_at_most: float | None = None,
    ) -> None:
        """`for_at_most` (seconds): a shorter memory, e.g. until the holding hold lapses (0 or less: none)."""
        ttl = self.ttl_seconds if for_at_most is None else min(self.ttl_seconds, for_at_most)
        if ttl <= 0:
            return
        now = self._clock()
        if len(self._seats) >= self._max_seats:
            self._drop_expired(now)
        until = now + ttl
        holders = holders or {}
        for seat in seat_ids:
            self._seats[(performance_id, seat)] = (holders.get(seat), until)

    def forget(self, performance_id: int, seat_ids: Iterable[int]) -> None:
        for seat in seat_ids:
            self._seats.pop((performance_id, seat), None)

    def _drop_expired(self, now: float) -> None:
        live = {key: value for key, value in list(self._seats.items()) if value[1] > now}
        self._seats = live if len(live) < self._max_seats else {}
