"""Use cases of the catalogue: create events (admin), list and read them, resolve performances.

Lookups of ids the catalogue's Bloom filter proves unknown are answered 404 without MySQL. The filter learns
an event's ids inside the transaction that stores it, before the commit: no process can find an id in MySQL
that the filter does not know. Not built yet (or unreadable), the filter has no say and MySQL answers.
"""

from __future__ import annotations

import base64
import binascii
import logging
import threading
from collections.abc import Callable, Iterator, Sequence

from chalicelib.domain.errors import InvalidRequest, NotFound, ServiceUnavailable
from chalicelib.domain.models import Event, EventSpec, Performance, Section
from chalicelib.domain.validation import parse_event_spec, parse_idempotency_key
from chalicelib.services.ports import CatalogueFilter, CatalogueStore, FillLock, IdempotentRunner

log = logging.getLogger(__name__)
DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 100
EVENT, PERFORMANCE, SEAT = "event", "performance", "seat"
# How long one process may hold the right to build the filter from MySQL (a second builder after it would
# only set the same bits again).
FILTER_BUILD_LEASE_SECONDS = 300


def section_to_dict(section: Section) -> dict:
    return {
        "section_id": section.section_id,
        "name": section.name,
        "price": section.price,
        "seat_count": section.seat_count,
        "first_seat_id": section.first_seat_id,
        "last_seat_id": section.last_seat_id,
    }


def performance_to_dict(performance: Performance) -> dict:
    return {
        "performance_id": performance.performance_id,
        "starts_at": performance.starts_at,
        "strategy": performance.strategy,
        "sections": [section_to_dict(s) for s in performance.sections],
        "waiting_room": (
            {"admit_per_second": performance.admit_per_second} if performance.admit_per_second else None
        ),
    }


def event_to_dict(event: Event) -> dict:
    return {
        "event_id": event.event_id,
        "name": event.name,
        "venue": event.venue,
        "performances": [performance_to_dict(p) for p in event.performances],
    }


def encode_cursor(event_id: int) -> str:
    return base64.urlsafe_b64encode(f"e:{event_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        kind, _, value = text.partition(":")
        if kind != "e" or not value.isdigit():
            raise ValueError(cursor)
        return int(value)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise InvalidRequest("'cursor' is not a cursor this service issued", field="cursor") from None


def parse_limit(raw: str | None) -> int:
    if raw is None:
        return DEFAULT_PAGE_SIZE
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_PAGE_SIZE:
        raise InvalidRequest(f"'limit' must be an integer from 1 to {MAX_PAGE_SIZE}", field="limit")
    return int(raw)


class CatalogueService:
    def __init__(
        self,
        store: CatalogueStore,
        default_strategy: str,
        idempotency: IdempotentRunner,
        available_strategies: frozenset[str],
        known_ids: CatalogueFilter,
        fill_lock: FillLock,
        on_performance_created: Callable[[Performance], object] = lambda performance: None,
    ) -> None:
        self._store = store
        self._known_ids = known_ids
        self._fill_lock = fill_lock
        self._default_strategy = default_strategy
        self._idempotency = idempotency
        self._available_strategies = available_strategies
        self._on_performance_created = on_performance_created
        # Performances never change once created, so every process may keep them for good.
        self._performances: dict[int, Performance] = {}
        self._lock = threading.Lock()

    def create_event(self, body: object, idempotency_key: str | None = None) -> dict:
        """-> the created event as the contract shows it; the same key and body replay the first answer."""
        key = parse_idempotency_key(idempotency_key)
        spec = parse_event_spec(body, self._default_strategy)
        self._check_strategies_available(spec)
        if key is None:
            return event_to_dict(self._create(spec))
        fingerprint = {"body": body}
        return self._idempotency.run_once(
            "create-event", key, fingerprint, lambda: event_to_dict(self._create(spec))
        )

    def _check_strategies_available(self, spec: EventSpec) -> None:
        # A performance whose strategy this deployment cannot run could never be booked: refuse it now.
        missing = sorted({p.strategy for p in spec.performances} - self._available_strategies)
        if missing:
            raise InvalidRequest(
                f"strategy {', '.join(missing)} is not available in this deployment", field="strategy"
            )

    def _create(self, spec: EventSpec) -> Event:
        # The filter learns the ids before they commit; if it cannot, nothing is created (503).
        event = self._store.create_event(spec, before_commit=lambda e: self._known_ids.add(_ids_of(e)))
        with self._lock:
            for performance in event.performances:
                self._performances[performance.performance_id] = performance
        for performance in event.performances:
            # The seats go live in Redis now, so the first booking does not pay for loading them.
            self._on_performance_created(performance)
        return event

    def list_events(self, limit_raw: str | None, cursor_raw: str | None) -> dict:
        limit = parse_limit(limit_raw)
        after = decode_cursor(cursor_raw) if cursor_raw else 0
        # One extra row tells whether another page exists without a COUNT.
        events = self._store.list_events(limit + 1, after)
        page = events[:limit]
        next_cursor = encode_cursor(page[-1].event_id) if len(events) > limit else None
        return {
            "events": [{"event_id": e.event_id, "name": e.name, "venue": e.venue} for e in page],
            "next_cursor": next_cursor,
        }

    def get_event(self, event_id: int) -> Event:
        if self._surely_unknown(EVENT, [event_id]):
            raise NotFound(f"event {event_id} not found")
        event = self._store.get_event(event_id)
        if event is None:
            raise NotFound(f"event {event_id} not found")
        return event

    def existing_seat_ids(self, seat_ids: list[int]) -> set[int]:
        unknown = self._surely_unknown(SEAT, seat_ids)
        maybe = [seat for seat in seat_ids if seat not in unknown]
        return self._store.existing_seat_ids(maybe) if maybe else set()

    def performance(self, performance_id: int) -> Performance:
        cached = self._performances.get(performance_id)
        if cached is not None:
            return cached
        if self._surely_unknown(PERFORMANCE, [performance_id]):
            raise NotFound(f"performance {performance_id} not found")
        performance = self._store.get_performance(performance_id)
        if performance is None:
            raise NotFound(f"performance {performance_id} not found")
        with self._lock:
            self._performances[performance_id] = performance
        return performance

    # the filter of known ids ------------------------------------------------------------------------------
    def build_id_filter(self) -> bool:
        """Build the Bloom filter of catalogue ids from MySQL unless it is built; True if this call built it.

        One builder across processes; a caller that finds another one building goes on without waiting (the
        filter has no say until built). Failures are logged, never raised: lookups then go to MySQL.
        """
        try:
            with self._fill_lock.hold("catalogue-filter", FILTER_BUILD_LEASE_SECONDS, 0) as held:
                if not held or self._known_ids.is_built():
                    return False
                self._known_ids.add(self._all_ids())
                self._known_ids.mark_built()
                return True
        except ServiceUnavailable as exc:
            log.warning("catalogue filter not built (%s): unknown ids are looked up in MySQL", exc.message)
            return False

    def _all_ids(self) -> Iterator[tuple[str, int]]:
        yield from ((EVENT, event_id) for event_id in self._store.event_ids())
        yield from ((PERFORMANCE, performance_id) for performance_id in self._store.performance_ids())
        for seats in self._store.seat_id_ranges():
            yield from ((SEAT, seat_id) for seat_id in seats)

    def _surely_unknown(self, kind: str, ids: Sequence[int]) -> set[int]:
        unknown = self._known_ids.absent(kind, ids)
        if unknown is None:  # not built (a new Redis, a lost key): build it, and ask MySQL meanwhile
            self.build_id_filter()
            return set()
        return unknown


def _ids_of(event: Event) -> Iterator[tuple[str, int]]:
    yield EVENT, event.event_id
    for performance in event.performances:
        yield PERFORMANCE, performance.performance_id
        for section in performance.sections:
            yield from ((SEAT, seat_id) for seat_id in range(section.first_seat_id, section.last_seat_id + 1))
