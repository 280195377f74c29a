"""What the services and the strategies need from the outside world: every method they call on a store, a
queue or a stream is declared here, and they are annotated with these, never with an adapter's class.
Adapters implement them (bootstrap wires the real ones); tests/support/fakes.py implements the MySQL ones in
memory, so the logic runs in unit tests with no server.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol

from chalicelib.domain.holds import HoldChange
from chalicelib.domain.messages import BookingRequested
from chalicelib.domain.models import (
    BestAvailable,
    Booking,
    BookingRequest,
    BookingStatus,
    Event,
    EventSpec,
    Performance,
    ReconcileEntry,
    SeatStatus,
    Section,
)
from chalicelib.domain.rate_limits import Bucket
from chalicelib.domain.seat_holds import BookingRecord, ReserveOutcome
from chalicelib.domain.seat_map import ChangeLogRead
from chalicelib.domain.waiting_room import TicketState


class CatalogueStore(Protocol):
    def create_event(
        self, spec: EventSpec, before_commit: Callable[[Event], object] = lambda event: None
    ) -> Event:
        """Store the event; `before_commit` runs inside its transaction (raising rolls everything back)."""
        ...

    def list_events(self, limit: int, after_event_id: int) -> list[Event]: ...
    def get_event(self, event_id: int) -> Event | None: ...
    def get_performance(self, performance_id: int) -> Performance | None: ...
    def existing_seat_ids(self, seat_ids: Iterable[int]) -> set[int]: ...
    def event_ids(self) -> list[int]: ...
    def performance_ids(self) -> list[int]: ...
    def seat_id_ranges(self) -> list[range]: ...


class CatalogueFilter(Protocol):
    """A Bloom filter of catalogue ids ("event", "performance", "seat"), shared by every process: its "absent"
    is certain, its "present" may be wrong. It never has a say while not built: callers ask the database."""

    def add(self, items: Iterable[tuple[str, int]]) -> None: ...
    def absent(self, kind: str, ids: Sequence[int]) -> set[int] | None:
        """The ids surely absent; None if the filter is not built; set() if it cannot be read."""
        ...

    def is_built(self) -> bool: ...
    def mark_built(self) -> None: ...


class FillLock(Protocol):
    """Single flight across processes: one holder of a name at a time, for at most `lease_seconds`."""

    def hold(self, name: str, lease_seconds: float, wait_seconds: float) -> AbstractContextManager[bool]:
        """Yields True while held, False if not had within `wait_seconds` (0: one try)."""
        ...


class Settlement(Protocol):
    booking: Booking | None  # None: MySQL has no booking of that id
    changed: bool  # False: it was final already (settled by someone else first)


class BookingStore(Protocol):
    """MySQL: the journal of every accepted booking (see adapters/mysql.py BookingRepository)."""

    def insert(self, booking: Booking, idempotency_key: str | None = None) -> None: ...
    def insert_in_line(self, booking: Booking, idempotency_key: str | None = None) -> None: ...
    def insert_if_seats_free(self, booking: Booking, idempotency_key: str | None = None) -> dict[int, str]:
        """`redis_lock`: store the booking unless an active booking holds a seat -> those seats' holders."""
        ...

    def insert_with_seat_row_locks(
        self, booking: Booking, idempotency_key: str | None = None
    ) -> dict[int, str]:
        """`db_lock`: as insert_if_seats_free under the seat rows' locks; raises SeatsLocked, never waits."""
        ...

    def insert_best_available(
        self, booking: Booking, section: Section, count: int, idempotency_key: str | None = None
    ) -> Booking | None:
        """Choose `count` seats of `section` and store the booking with them, in one transaction -> the
        booking stored, None if the section has not that many free. Raises SeatsLocked, never waits."""
        ...

    def settle(
        self,
        booking_id: str,
        status: BookingStatus,
        reason: str | None = None,
        seat_ids: tuple[int, ...] | None = None,
    ) -> Settlement:
        """PENDING -> `status`; `seat_ids`: the seats chosen in line for a best available booking."""
        ...

    def decide_in_line(self, booking_id: str) -> Settlement: ...
    def get(self, booking_id: str) -> Booking | None: ...
    def cancel(self, booking_id: str) -> tuple[Booking | None, Booking | None]: ...
    def confirm_hold(self, booking_id: str, payment_reference: str) -> HoldChange: ...
    def extend_hold(self, booking_id: str, hold_seconds: float, max_extensions: int) -> HoldChange: ...
    def expire(self, booking_id: str) -> Settlement:
        """A lapsed hold -> EXPIRED, its seats released; anything else is left as it is."""
        ...

    def lapsed_holds(self, limit: int = 1_000) -> list[Booking]: ...
    def holders_of(self, seat_ids: Iterable[int]) -> dict[int, tuple[str, BookingStatus]]: ...
    def active_seat_holders(self, performance_id: int) -> dict[int, tuple[str, BookingStatus]]: ...
    def log_reconcile(self, entry: ReconcileEntry) -> None: ...


class RememberedBookings(Protocol):
    """Bookings accepted but perhaps not yet in MySQL (Redis keeps a record of each)."""

    def read_booking(self, booking_id: str, performance_id: int | None = None) -> Booking | None: ...


class SeatChanges(RememberedBookings, Protocol):
    """The owner-checked seat changes (Lua) that keep the seat map in line with MySQL's decisions."""

    def confirm(
        self,
        booking_id: str,
        performance_id: int,
        seat_ids: Iterable[int],
        overwrite: bool = False,
        hold_until: float | None = None,
    ) -> int:
        """Seats -> booked by this booking (held until `hold_until`, epoch seconds, for a HELD hold);
        `overwrite` only where MySQL has just made it their holder."""
        ...

    def release(self, booking_id: str, performance_id: int, seat_ids: Iterable[int]) -> int:
        """Free the seats that still show this booking -> how many."""
        ...

    def mark_record(
        self,
        booking_id: str,
        status: BookingStatus,
        reason: str | None = None,
        performance_id: int | None = None,
    ) -> bool: ...


class SeatStore(SeatChanges, Protocol):
    """The live seat state of performances and the records of accepted bookings (Redis)."""

    def load_performance(
        self, performance_id: int, seat_ids: Iterable[int], holders: Mapping[int, tuple[str, BookingStatus]]
    ) -> bool: ...
    def versioned_statuses(self, performance_id: int) -> tuple[int, dict[int, SeatStatus] | None]:
        """(version, statuses) read in one atomic step; statuses None if the performance is not loaded."""
        ...

    def loaded_version(self, performance_id: int) -> int | None:
        """The seat map's version; None if the performance's seats are not loaded."""
        ...

    def current_versions(self, performance_id: int) -> tuple[int | None, int | None]:
        """(the map's version, None if not loaded; the version rendered within the render interval, None if
        none was), in one round trip."""
        ...

    def version(self, performance_id: int) -> int: ...

    def changes_since(
        self, performance_id: int, since: int, frame_seconds: float = 0.0
    ) -> ChangeLogRead | None:
        """The change log's entries after version `since` up to the frame shared for `frame_seconds` (0: the
        current version), with the version they lead to, in one atomic step (entries None if the log does
        not reach back to since); None if the seats are not loaded."""
        ...

    def rendered_views(self, performance_id: int, version: int) -> dict[str, str] | None:
        """The views of the map's `version` as a process stored them (view name -> its encoded bytes as text);
        None if none did, or they expired."""
        ...

    def keep_rendered_views(
        self,
        performance_id: int,
        version: int,
        views: Mapping[str, str],
        ttl_seconds: int,
        frame_seconds: float = 0.0,
    ) -> None:
        """Share the views of the map's `version` with every process for `ttl_seconds`, and name it the
        version to serve, newer ones notwithstanding, for `frame_seconds` (the render interval)."""
        ...

    def repair_holders(
        self,
        performance_id: int,
        changes: Iterable[tuple[int, tuple[str, BookingStatus] | None, tuple[str, BookingStatus] | None]],
    ) -> int:
        """(seat, holder it should still show, holder to show now) -> seats changed, each only if the map
        still shows the first (compare-and-set); a holder is (booking id, status), None for a free seat."""
        ...

    def reserve(self, record: BookingRecord, best: BestAvailable | None = None) -> ReserveOutcome:
        """`redis_async`'s take: every seat for this booking, with its record, or none (one atomic step);
        for the best available, the seats chosen and taken in that step (ReserveOutcome.seat_ids)."""
        ...

    def taken_among(self, performance_id: int, seat_ids: tuple[int, ...]) -> dict[int, str] | None:
        """The seats the map shows taken -> their raw states; None if the performance is not loaded."""
        ...

    def hold_deadlines(self, performance_id: int, booking_ids: Iterable[str]) -> dict[str, float]:
        """booking id -> its hold's deadline (epoch seconds), for those of the bookings that are holds."""
        ...

    def remember(self, record: BookingRecord) -> None:
        """Keep a booking's record without holding seats (the strategies that decide later, in line)."""
        ...

    def delete_record(self, booking_id: str, performance_id: int | None = None) -> None: ...
    def note_missed(self, performance_id: int) -> None:
        """The map missed a change MySQL made (Redis was away): realign it once Redis answers."""
        ...


class BookingQueue(Protocol):
    """An SQS queue as the request path sees it: `message` has a "body", and on a FIFO queue a "group_id"
    and a "deduplication_id". Raises if the message may not have been sent."""

    def publish(self, message: Mapping[str, Any]) -> None: ...


class RecordStream(Protocol):
    """A Kinesis stream (stream_state's request stream and changelog): records in order per shard."""

    def put(self, data: str, partition_key: str) -> str:
        """Append a record -> its sequence number. Raises if it may not have been appended. A put that
        returned is ahead of every later put of its partition key; concurrent puts are in no given order."""
        ...

    def put_many(self, records: Sequence[tuple[str, str]]) -> list[str]:
        """Append (data, partition key) records at once, in no given order among them (order them by
        putting them in successive calls) -> their sequence numbers. Raises if any may not be appended."""
        ...

    def read_since(self, positions: Mapping[str, str]) -> Iterator[tuple[str, str, str]]:
        """(shard id, sequence number, data) of every record after `positions` (shard id -> sequence)."""
        ...


class KeyValueStore(Protocol):
    """stream_state's embedded ledger store (RocksDB): reads, and atomic batches of writes."""

    def get(self, key: str) -> str | None: ...

    def write(self, puts: Mapping[str, str], deletes: Iterable[str] = ()) -> None: ...


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


# --- the reconcile job (services/reconcile.py) -----------------------------------------------------------
class ReconcileStore(BookingStore, Protocol):
    """MySQL, the truth, as the reconcile job reads it."""

    def statuses(self, booking_ids: Iterable[str]) -> dict[str, BookingStatus]:
        """booking id -> status, for the ids MySQL has (the others are absent)."""
        ...

    def pending_accepted_before(
        self, epoch_seconds: float, performance_id: int | None = None, limit: int = 1_000
    ) -> list[Booking]:
        """PENDING bookings accepted before `epoch_seconds`, oldest first."""
        ...

    def recently_active_performances(self, within_seconds: int) -> list[int]:
        """Performances with a booking written (inserted or updated) within the last `within_seconds`."""
        ...

    def open_reconcile_entries(
        self, action: str, closed_by: str, performance_id: int | None = None
    ) -> list[str]:
        """Booking ids of reconcile_log rows of `action` that no `closed_by` row answers yet."""
        ...


class SeatMapAudit(Protocol):
    """The Redis seat maps as a whole, and the version of each the reconcile job last found clean."""

    def snapshot(self, performance_id: int) -> tuple[int, dict[int, str] | None]:
        """(version, seat id -> raw state) read in one atomic step; states None if not loaded."""
        ...

    def states_of(self, performance_id: int, seat_ids: Iterable[int]) -> dict[int, str | None]: ...
    def loaded_performances(self) -> dict[int, int]:
        """performance id -> seat map version, for every performance with a version in Redis."""
        ...

    def checked_versions(self) -> dict[int, int]: ...
    def remember_checked(self, performance_id: int, version: int) -> None: ...


class SeatRepairs(SeatChanges, Protocol):
    """The owner-checked seat changes (Lua) the reconcile job repairs with."""

    def replace(self, performance_id: int, changes: Iterable[tuple[int, str | None, str]]) -> int:
        """(seat, raw state it should still show, new raw state) -> seats changed (compare-and-set)."""
        ...


class HoldCompensator(Protocol):
    """An asynchronous strategy's give_up (strategies/async_common.py): FAILED first, then the seats back."""

    def give_up(self, booking_id: str, reason: str, message: BookingRequested | None) -> BookingStatus | None:
        """No delivery can ever succeed: mark the booking FAILED and give its seats back (idempotent)."""
        ...


class LedgerReleases(Protocol):
    """stream_state: put a booking's release on the request stream, behind its request (raises if it
    cannot), so the seat ledger lets go of seats MySQL says the booking does not hold."""

    def send_ledger_release(self, booking: Booking) -> None: ...


# --- the one seam every concurrency strategy plugs into (docs/architecture.md) ---------------------------
class BookingStrategy(Protocol):
    """May this user have these seats of this performance?

    `book` answers CONFIRMED (synchronous strategies) or PENDING (asynchronous ones), or raises
    SeatUnavailable / ServiceUnavailable. The service layer has already validated the request, resolved the
    performance and applied idempotency; a strategy never parses HTTP or formats a response.
    """

    name: str

    def book(self, request: BookingRequest) -> Booking: ...

    def release(self, booking: Booking) -> None:
        """Give a cancelled booking's seats back in whatever state the strategy keeps besides MySQL."""
        ...


class AsyncBookingStrategy(BookingStrategy, HoldCompensator, Protocol):
    """A strategy that answers PENDING and finishes the booking in a consumer."""

    def finish(self, message: BookingRequested) -> BookingStatus:
        """Make the booking final (idempotent: a redelivered message changes nothing)."""
        ...

    def resend(self, booking: Booking, performance: Performance) -> None:
        """Send a journaled PENDING booking on again (its first send may never have happened)."""
        ...


# --- identities, rate limits and waiting rooms (issue 18) -------------------------------------------------
class AdmissionCheck(Protocol):
    def check_admission(self, token: str | None, user_id: str, performance_id: int) -> None: ...


class AdmissionIssuer(Protocol):
    def admission_token(self, user_id: str, performance_id: int, issued_at: float) -> dict[str, Any]: ...


class TokenBuckets(Protocol):
    def take(self, buckets: Sequence[Bucket]) -> tuple[float, int]: ...


class QueueStore(Protocol):
    def join(
        self,
        performance_id: int,
        user_id: str,
        new_ticket: str,
        now_ms: int,
        rate: int,
        collect_ms: int,
        lifetime_ms: int,
        admission_ms: int,
    ) -> TicketState: ...

    def read(
        self,
        performance_id: int,
        ticket: str,
        user_id: str,
        now_ms: int,
        rate: int,
        collect_ms: int,
        admission_ms: int,
    ) -> TicketState | None: ...
