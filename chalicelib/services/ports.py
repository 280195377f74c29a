"""What the services need from the outside world. Adapters implement these; tests may too."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol

from chalicelib.domain.models import (
    Booking,
    BookingStatus,
    Event,
    EventSpec,
    Performance,
    ReconcileEntry,
    SeatStatus,
)


class CatalogueStore(Protocol):
    def create_event(self, spec: EventSpec) -> Event: ...
    def list_events(self, limit: int, after_event_id: int) -> list[Event]: ...
    def get_event(self, event_id: int) -> Event | None: ...
    def get_performance(self, performance_id: int) -> Performance | None: ...
    def existing_seat_ids(self, seat_ids: Iterable[int]) -> set[int]: ...


class BookingStore(Protocol):
    def insert(self, booking: Booking) -> None: ...
    def get(self, booking_id: str) -> Booking | None: ...
    def cancel(self, booking_id: str) -> tuple[Booking | None, Booking | None]: ...
    def active_seat_holders(self, performance_id: int) -> dict[int, tuple[str, BookingStatus]]: ...
    def log_reconcile(self, entry: ReconcileEntry) -> None: ...


class SeatStore(Protocol):
    """The live seat state of performances (Redis)."""

    def load_performance(
        self, performance_id: int, seat_ids: Iterable[int], holders: Mapping[int, tuple[str, BookingStatus]]
    ) -> bool: ...
    def seat_statuses(self, performance_id: int) -> dict[int, SeatStatus] | None: ...
    def version(self, performance_id: int) -> int: ...


class RememberedBookings(Protocol):
    """Bookings accepted but perhaps not yet in MySQL (Redis keeps a record of each)."""

    def read_booking(self, booking_id: str) -> Booking | None: ...


class BookingQueue(Protocol):
    def publish(self, message: Mapping[str, Any]) -> None: ...


class IdempotentRunner(Protocol):
    def run_once(
        self, scope: str, key: str, fingerprint: Mapping[str, Any], work: Callable[[], dict]
    ) -> dict:
        """Run `work` once per (scope, key); replay its result for a repeat with the same fingerprint.

        Raises IdempotencyKeyReused for a different fingerprint and IdempotencyInProgress while the first
        call is still running. A call whose work raises is forgotten, so it may be retried.
        """
        ...


class HealthCheck(Protocol):
    def __call__(self) -> bool: ...
