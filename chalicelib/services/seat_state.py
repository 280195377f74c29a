"""The live seat state of a performance in Redis: publishing it, rebuilding it from MySQL, reading the map.

A missing seat map (a new performance; Redis restarted, evicted or dropped it) is filled from MySQL by one
caller at a time across all processes (single flight): the others wait for it and read what it published,
so a cold burst of reads costs MySQL one query instead of one per request.

Rendered maps are kept per process under the map's version (every seat change bumps it): while the version
is unchanged, a read costs one small Redis round trip instead of the whole hash and the rendering. A map
checked less than `map_cache_seconds` ago is answered without asking Redis at all (0 by default: never).
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping

from chalicelib.domain.errors import ServiceUnavailable
from chalicelib.domain.models import Performance, SeatStatus
from chalicelib.services.ports import BookingStore, FillLock, SeatStore

# A waiter re-reads Redis at least this often while another caller fills the map.
FILL_RECHECK_SECONDS = 0.05
# Rendered maps kept per process, the least recently read dropped first (a 2,000-seat map is ~0.4 MB).
RENDERED_MAPS = 32


@dataclasses.dataclass(frozen=True)
class RenderedMap:
    version: int
    checked_at: float  # when Redis last confirmed this version (clock of the service)
    body: dict


class SeatStateService:
    def __init__(
        self,
        seat_store: SeatStore,
        bookings: BookingStore,
        fill_lock: FillLock,
        *,
        fill_lock_seconds: float = 5.0,
        fill_wait_seconds: float = 3.0,
        map_cache_seconds: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._seats = seat_store
        self._bookings = bookings
        self._fill_lock = fill_lock
        self._fill_lock_seconds = fill_lock_seconds
        self._fill_wait_seconds = fill_wait_seconds
        self._map_cache_seconds = map_cache_seconds
        self._clock = clock
        self._rendered: OrderedDict[int, RenderedMap] = OrderedDict()
        self._rendered_lock = threading.Lock()

    def publish(self, performance: Performance) -> bool:
        """Load the performance's seats into Redis from MySQL (the truth) unless they are there already;
        True if this call loaded them.

        Double-checked, one filler per performance across processes: take the performance's fill lock, check
        Redis again, and only then query MySQL. A caller that cannot have the lock re-reads Redis until the
        holder has published (-> False). Past the fill wait it raises ServiceUnavailable (503) rather than
        query MySQL itself: a filler that slow means MySQL is struggling, and every waiter turning to it at
        once is the stampede this lock is here to prevent. A dead holder's lock lapses after its lease.
        """
        performance_id = performance.performance_id
        deadline = time.monotonic() + self._fill_wait_seconds
        while True:
            wait = min(FILL_RECHECK_SECONDS, max(0.0, deadline - time.monotonic()))
            with self._fill_lock.hold(f"seats:{performance_id}", self._fill_lock_seconds, wait) as held:
                if self._seats.loaded_version(performance_id) is not None:
                    return False  # another caller has published it
                if held:
                    return self._fill(performance)
            if time.monotonic() >= deadline:
                raise ServiceUnavailable(
                    f"the seat map of performance {performance_id} is being loaded; try again shortly"
                )

    def _fill(self, performance: Performance) -> bool:
        """Publish the map from MySQL's holders, then catch up with what MySQL changed meanwhile.

        A confirm, release or booking that committed in MySQL after the holders were read, and reached Redis
        before the map was published, met no map and changed nothing there. Reading the holders again after
        publishing finds every such change (it committed before its Redis call, which came before the
        publish); each is applied only where the map still shows what was published (compare-and-set), so a
        live change made since the publish is never undone."""
        performance_id = performance.performance_id
        published_from = self._bookings.active_seat_holders(performance_id)
        if not self._seats.load_performance(performance_id, performance.seat_ids, published_from):
            return False
        now = self._bookings.active_seat_holders(performance_id)
        changes = [
            (seat, published_from.get(seat), now.get(seat))
            for seat in published_from.keys() | now.keys()
            if published_from.get(seat) != now.get(seat)
        ]
        self._seats.repair_holders(performance_id, changes)
        return True

    def seat_map(self, performance: Performance) -> dict:
        """The performance's seat map as the contract shows it. The answer is shared: do not change it."""
        performance_id = performance.performance_id
        rendered = self._rendered_map(performance_id)
        now = self._clock()
        if rendered is not None:
            if now - rendered.checked_at < self._map_cache_seconds:
                return rendered.body
            if self._seats.loaded_version(performance_id) == rendered.version:
                self._keep(performance_id, dataclasses.replace(rendered, checked_at=now))
                return rendered.body
        version, statuses = self._versioned_statuses(performance)
        body = render_seat_map(performance, version, statuses)
        self._keep(performance_id, RenderedMap(version, now, body))
        return body

    def _versioned_statuses(self, performance: Performance) -> tuple[int, dict[int, SeatStatus]]:
        version, statuses = self._seats.versioned_statuses(performance.performance_id)
        if statuses is None:
            self.publish(performance)
            version, statuses = self._seats.versioned_statuses(performance.performance_id)
        return version, statuses or {}

    def _rendered_map(self, performance_id: int) -> RenderedMap | None:
        with self._rendered_lock:
            rendered = self._rendered.get(performance_id)
            if rendered is not None:
                self._rendered.move_to_end(performance_id)
            return rendered

    def _keep(self, performance_id: int, rendered: RenderedMap) -> None:
        with self._rendered_lock:
            kept = self._rendered.get(performance_id)
            if kept is not None and kept.version > rendered.version:
                return  # a concurrent reader rendered a newer map
            self._rendered[performance_id] = rendered
            self._rendered.move_to_end(performance_id)
            while len(self._rendered) > RENDERED_MAPS:
                self._rendered.popitem(last=False)


def render_seat_map(performance: Performance, version: int, statuses: Mapping[int, SeatStatus]) -> dict:
    sections = []
    for section in performance.sections:
        seats = []
        available = 0
        for seat_id in range(section.first_seat_id, section.last_seat_id + 1):
            status = statuses.get(seat_id, SeatStatus.AVAILABLE)
            available += status is SeatStatus.AVAILABLE
            row, number = section.position_of(seat_id)
            seats.append({"seat_id": seat_id, "row": row, "number": number, "status": status.value})
        sections.append(
            {
                "section_id": section.section_id,
                "name": section.name,
                "price": section.price,
                "available": available,
                "seats": seats,
            }
        )
    return {
        "performance_id": performance.performance_id,
        "strategy": performance.strategy,
        "version": version,
        "sections": sections,
    }
