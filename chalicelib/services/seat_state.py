"""The live seat state of a performance in Redis: publishing it, rebuilding it from MySQL, reading the map.

A missing seat map (a new performance; Redis restarted, evicted or dropped it) is filled from MySQL by one
caller at a time across all processes (single flight): the others wait for it and read what it published,
so a cold burst of reads costs MySQL one query instead of one per request.

Rendered maps are kept per process under the map's version (every seat change bumps it): while the version
is unchanged, a read costs one small Redis round trip instead of the whole hash and the rendering. A map
checked less than `map_cache_seconds` ago is answered without asking Redis at all (0 by default: never).
A map is kept as the bytes every view is sent as (seat_map_views.py), made by the first process to read its
version and stored in Redis under that version for the others, so a version is rendered and compressed once.

During a rush nearly every read meets a new version, and rendering each one (~15 ms of CPU at 5,000 seats)
would cost more than the reads: a version rendered less than `render_seconds` ago is served in place of
newer ones, so a performance's map is rendered at most once per render interval across all processes. A
seat change thus shows in every map answer at most `map_cache_seconds` + `render_seconds` after Redis
records it (docs/seat-map.md). Deltas (`changes_since`) lead to the same frame, so readers who polled in one
interval send the same `since` next time and share one answer (in each process, and in a CDN).
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable

from chalicelib.domain.errors import ServiceUnavailable, VersionGone
from chalicelib.domain.models import Performance, SeatStatus
from chalicelib.domain.seat_map import changes_after
from chalicelib.services.ports import BookingStore, FillLock, SeatStore
from chalicelib.services.seat_map_views import EncodedChanges, EncodedSeatMap

log = logging.getLogger(__name__)

# A waiter re-reads Redis at least this often while another caller fills the map.
FILL_RECHECK_SECONDS = 0.05
# Rendered maps kept per process, the least recently read dropped first (a 5,000-seat map's views, text and
# gzip, are ~0.35 MB).
RENDERED_MAPS = 32
# How long the readers of a version wait for the process rendering it (a 5,000-seat map takes ~50-100 ms).
RENDER_WAIT_SECONDS = 0.5
# A version's rendered bytes stay in Redis this long: every process reads a new version within moments, and a
# short life bounds what a rush of versions keeps in a Redis that may not evict (~40 KB each at 5,000 seats).
RENDERED_SHARE_SECONDS = 10
# Delta answers kept per process, by performance and `since`: readers polling in one render interval were
# answered the same frame, so they ask with the same few `since`s.
ENCODED_CHANGES = 256


@dataclasses.dataclass(frozen=True)
class RenderedMap:
    encoded: EncodedSeatMap  # every view of one version, ready to send
    checked_at: float  # when Redis last confirmed this version (clock of the service)

    @property
    def version(self) -> int:
        return self.encoded.version


@dataclasses.dataclass(frozen=True)
class KeptChanges:
    encoded: EncodedChanges  # the answer to one `since`
    checked_at: float  # when Redis gave it (clock of the service)


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
        render_seconds: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._seats = seat_store
        self._bookings = bookings
        self._fill_lock = fill_lock
        self._fill_lock_seconds = fill_lock_seconds
        self._fill_wait_seconds = fill_wait_seconds
        self._map_cache_seconds = map_cache_seconds
        self._render_seconds = render_seconds
        self._clock = clock
        self._rendered: OrderedDict[int, RenderedMap] = OrderedDict()
        self._rendered_lock = threading.Lock()
        self._encoded_changes: OrderedDict[tuple[int, int], KeptChanges] = OrderedDict()

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
        """The performance's full seat map as data (HTTP answers send `encoded_map`'s bytes instead)."""
        return self.encoded_map(performance).as_dict()

    def encoded_map(self, performance: Performance) -> EncodedSeatMap:
        """Every view of the performance's current seat map, as the bytes to send. Shared: do not change it.

        Kept per process under its version; a version this process has not rendered is taken from the copy
        the first process to render it stored in Redis, and rendered (once across processes: single flight)
        only if there is none."""
        performance_id = performance.performance_id
        rendered = self._rendered_map(performance_id)
        now = self._clock()
        if rendered is not None and now - rendered.checked_at < self._map_cache_seconds:
            return rendered.encoded
        version, fresh = self._seats.current_versions(performance_id)
        if version is not None and fresh is not None and fresh < version:
            # Rendered within the render interval: serve that version (or a newer one kept here) instead.
            if rendered is not None and rendered.version >= fresh:
                self._keep(performance_id, dataclasses.replace(rendered, checked_at=now))
                return rendered.encoded
            shared = self._shared(performance_id, fresh)
            if shared is not None:
                self._keep(performance_id, RenderedMap(shared, now))
                return shared
        if rendered is not None and version == rendered.version:
            self._keep(performance_id, dataclasses.replace(rendered, checked_at=now))
            return rendered.encoded
        encoded = (self._shared(performance_id, version) if version is not None else None) or self._render(
            performance, version
        )
        self._keep(performance_id, RenderedMap(encoded, now))
        return encoded

    def changes_since(self, performance: Performance, since: int) -> EncodedChanges:
        """What changed on the performance's map after version `since`, up to the frame every reader of this
        render interval is served (read from the change log with the version, in one step). A process answers
        a `since` it answered less than `map_cache_seconds` ago from memory. Raises VersionGone where the log
        cannot say: since is older than the history it keeps, newer than the map, or from before the map was
        rebuilt; and when the map is not loaded (a rebuilt map starts a new history, so no earlier version
        leads into it)."""
        performance_id = performance.performance_id
        key = (performance_id, since)
        now = self._clock()
        with self._rendered_lock:
            kept = self._encoded_changes.get(key)
        if kept is not None and now - kept.checked_at < self._map_cache_seconds:
            return kept.encoded
        read = self._seats.changes_since(performance_id, since, self._render_seconds)
        if read is None or read.entries is None:
            raise VersionGone(
                f"version {since} of the seat map of performance {performance_id} is not in its change "
                "history; read the whole map again"
            )
        if kept is not None and kept.encoded.version == read.version:
            encoded = kept.encoded  # the same answer: not encoded again
        else:
            changes = changes_after(since, read.version, read.entries)
            if changes is None:
                raise VersionGone(
                    f"the change history of performance {performance_id} does not reach {since}"
                )
            encoded = EncodedChanges.of(performance_id, since, read.version, changes)
        with self._rendered_lock:
            self._encoded_changes[key] = KeptChanges(encoded, now)
            self._encoded_changes.move_to_end(key)
            while len(self._encoded_changes) > ENCODED_CHANGES:
                self._encoded_changes.popitem(last=False)
        return encoded

    def _shared(self, performance_id: int, version: int) -> EncodedSeatMap | None:
        stored = self._seats.rendered_views(performance_id, version)
        return EncodedSeatMap.of_stored(version, stored) if stored else None

    def _render(self, performance: Performance, version: int | None) -> EncodedSeatMap:
        """Render the map and share its bytes. One renderer per performance at a time across processes: the
        others wait for it a little (RENDER_WAIT_SECONDS; then they render themselves rather than wait
        longer) and take the bytes of the version that is current by then, which the renderer may have made
        (during a rush it renders the newest version, not necessarily the one a waiter first met)."""
        performance_id = performance.performance_id
        if version is None:  # not loaded: nothing to wait for, the fill below is single flight already
            return self._render_and_share(performance)
        with self._fill_lock.hold(
            f"rendered:{performance_id}", self._fill_lock_seconds, RENDER_WAIT_SECONDS
        ) as held:
            current = self._seats.loaded_version(performance_id)
            shared = self._shared(performance_id, current) if current is not None else None
            if shared is not None:
                return shared
            if not held:
                log.warning("seat map %s: its renderer is slow; rendering it here too", performance_id)
            return self._render_and_share(performance)

    def _render_and_share(self, performance: Performance) -> EncodedSeatMap:
        # The version read with the statuses (maybe newer than the one asked for) names what was rendered.
        version, statuses = self._versioned_statuses(performance)
        encoded = EncodedSeatMap.render(performance, version, statuses)
        self._seats.keep_rendered_views(
            performance.performance_id,
            version,
            encoded.to_store(),
            RENDERED_SHARE_SECONDS,
            self._render_seconds,
        )
        return encoded

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
