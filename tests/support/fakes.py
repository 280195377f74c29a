"""In-memory stand-ins for the ports (chalicelib/services/ports.py), so the services', strategies', consumer's
and reconcile job's logic runs in unit tests with no server and no network.

MySQL is faked here (InMemoryBookings, InMemoryCatalogue): the booking store honours the repository's
contract — a compare-and-set settle from PENDING, the unique guard (one active booking per seat), the
Idempotency-Key unique per user — which tests/support/booking_store_contract.py checks on both this fake and
MariaDB. Redis is not faked: the real adapters run on fakeredis, whose Lua (lupa) runs the project's scripts
unchanged. Queues and streams record what is sent and fail on demand.
"""

from __future__ import annotations

import dataclasses
import itertools
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

from chalicelib.adapters.mysql import Settlement
from chalicelib.domain.best_available import choose_seats
from chalicelib.domain.errors import (
    BookingExists,
    IdempotencyKeyTaken,
    SeatAlreadyBooked,
    SeatsLocked,
    ServiceUnavailable,
    UserLimit,
)
from chalicelib.domain.holds import HoldChange, HoldOutcome, confirm_outcome, extend_outcome, settled_as
from chalicelib.domain.models import (
    HOLD_EXPIRED_REASON,
    Booking,
    BookingStatus,
    Event,
    EventSpec,
    Performance,
    ReconcileEntry,
    Section,
)

Holder = tuple[str, BookingStatus]


class Outage:
    """MySQL (or a queue) away on demand: `down()` for every call, `down("settle")` for some methods only."""

    def __init__(self, what: str) -> None:
        self._what = what
        self._failing: set[str] | None = set()  # None: everything fails

    def down(self, *methods: str) -> None:
        self._failing = set(methods) if methods else None

    def up(self) -> None:
        self._failing = set()

    def check(self, method: str) -> None:
        if self._failing is None or method in self._failing:
            raise ServiceUnavailable(f"{self._what} unavailable")


@dataclasses.dataclass
class _Row:
    booking: Booking
    idempotency_key: str | None
    created_at: float
    updated_at: float
    seats_active: bool | None  # None: waiting in line, no seat rows yet


class InMemoryBookings:
    """The BookingStore and ReconcileStore ports in memory, with MySQL's contract (adapters/mysql.py)."""

    def __init__(self, clock: Callable[[], float] = time.time, max_seats_per_user: int | None = None) -> None:
        self._rows: dict[str, _Row] = {}
        self.clock = clock
        self.max_seats_per_user = max_seats_per_user
        self.on_expired: Callable[[Booking], object] = lambda booking: None
        # section id -> its section, for a best available booking decided in line (MySQL reads its table).
        self.sections: dict[int, Section] = {}
        self.reconcile_log: dict[str, ReconcileEntry] = {}  # dedup key -> entry (INSERT IGNORE)
        self.outage = Outage("database")
        # Seats another transaction holds the row locks of right now (db_lock's NOWAIT refuses them).
        self.row_locked_seats: set[int] = set()

    # writes at acceptance ---------------------------------------------------------------------------------
    def insert(self, booking: Booking, idempotency_key: str | None = None) -> None:
        self.outage.check("insert")
        self._insert(booking, idempotency_key, seats_active=booking.status.holds_seats)

    def insert_best_available(
        self, booking: Booking, section: Section, count: int, idempotency_key: str | None = None
    ) -> Booking | None:
        self.outage.check("insert_best_available")
        seats = choose_seats(section, self._free_seats(section), count)
        if seats is None:
            return None
        chosen = booking.with_seats(seats)
        if self.row_locked_seats.intersection(chosen.seat_ids):
            raise SeatsLocked(list(chosen.seat_ids))
        self._insert(chosen, idempotency_key, seats_active=chosen.status.holds_seats)
        return chosen

    def insert_in_line(self, booking: Booking, idempotency_key: str | None = None) -> None:
        self.outage.check("insert_in_line")
        self._insert(booking, idempotency_key, seats_active=None)

    def insert_if_seats_free(self, booking: Booking, idempotency_key: str | None = None) -> dict[int, str]:
        self.outage.check("insert_if_seats_free")
        taken = self._holder_ids(booking.seat_ids)
        if not taken:
            self._insert(booking, idempotency_key, seats_active=booking.status.holds_seats)
        return taken

    def insert_with_seat_row_locks(
        self, booking: Booking, idempotency_key: str | None = None
    ) -> dict[int, str]:
        self.outage.check("insert_with_seat_row_locks")
        if self.row_locked_seats.intersection(booking.seat_ids):
            raise SeatsLocked(list(booking.seat_ids))
        return self.insert_if_seats_free(booking, idempotency_key)

    def _insert(self, booking: Booking, key: str | None, seats_active: bool | None) -> None:
        if booking.booking_id in self._rows:
            raise BookingExists(booking.booking_id)
        if key is not None:
            for row in self._rows.values():
                if row.booking.user_id == booking.user_id and row.idempotency_key == key:
                    raise IdempotencyKeyTaken(row.booking.booking_id)
        if seats_active:
            self._guard(booking)
            self._check_allowance(booking)
        now = self.clock()
        self._rows[booking.booking_id] = _Row(booking, key, now, now, seats_active)

    def _check_allowance(self, booking: Booking) -> None:
        """MAX_SEATS_PER_USER over the user's other bookings that hold seats (a lapsed hold holds none)."""
        if self.max_seats_per_user is None:
            return
        now = self.clock()
        held = sum(
            len(row.booking.seat_ids)
            for row in self._active_rows()
            if (row.booking.performance_id, row.booking.user_id) == (booking.performance_id, booking.user_id)
            and row.booking.booking_id != booking.booking_id
            and not row.booking.lapsed(now)
        )
        if held + len(booking.seat_ids) > self.max_seats_per_user:
            raise UserLimit(max(0, self.max_seats_per_user - held), self.max_seats_per_user)

    def _guard(self, booking: Booking) -> None:
        """The unique guard on booking_seats: one active booking per seat (a lapsed hold gives way first)."""
        clash = {s: b for s, b in self._holder_ids(booking.seat_ids).items() if b != booking.booking_id}
        if clash:
            raise SeatAlreadyBooked(f"Duplicate entry for key 'uq_one_active_booking_per_seat': {clash}")

    # settling ---------------------------------------------------------------------------------------------
    def settle(
        self,
        booking_id: str,
        status: BookingStatus,
        reason: str | None = None,
        seat_ids: tuple[int, ...] | None = None,
    ) -> Settlement:
        self.outage.check("settle")
        row = self._rows.get(booking_id)
        if row is None or row.booking.status is not BookingStatus.PENDING:
            return Settlement(row.booking if row else None, changed=False)
        status, reason = settled_as(row.booking, status, reason, self.clock())
        settled = row.booking
        if seat_ids and settled.wanted is not None and not settled.seat_ids:
            settled = settled.with_seats(seat_ids)  # kept only if the settlement stands (MySQL rolls back)
        if status.holds_seats and not row.seats_active:
            self._guard(settled)
            self._check_allowance(settled)
        row.booking = settled
        self._set_status(row, status, reason)
        return Settlement(row.booking, changed=True)

    def decide_in_line(self, booking_id: str) -> Settlement:
        self.outage.check("decide_in_line")
        row = self._rows.get(booking_id)
        if row is None or row.booking.status is not BookingStatus.PENDING:
            return Settlement(row.booking if row else None, changed=False)
        wanted = row.booking.wanted
        if wanted is not None and not row.booking.seat_ids:
            seats = choose_seats(
                self.sections[wanted[0]], self._free_seats(self.sections[wanted[0]]), wanted[1]
            )
            if seats is None:
                reason = f"no {wanted[1]} seats of section {wanted[0]} were free at its turn"
                self._set_status(row, BookingStatus.REJECTED, reason)
                return Settlement(row.booking, changed=True)
            row.booking = row.booking.with_seats(seats)
        taken = sorted(self._holder_ids(row.booking.seat_ids))
        if taken:
            self._set_status(row, BookingStatus.REJECTED, f"seat(s) {taken} were taken earlier in line")
            return Settlement(row.booking, changed=True)
        status, reason = settled_as(row.booking, BookingStatus.CONFIRMED, None, self.clock())
        if status.holds_seats:
            try:
                self._check_allowance(row.booking)
            except UserLimit:
                status, reason = BookingStatus.REJECTED, UserLimit.reason
        self._set_status(row, status, reason)
        return Settlement(row.booking, changed=True)

    def cancel(self, booking_id: str) -> tuple[Booking | None, Booking | None]:
        self.outage.check("cancel")
        row = self._rows.get(booking_id)
        if row is None or not row.booking.status.holds_seats:
            return (row.booking if row else None), None
        if row.booking.lapsed(self.clock()):
            self._expire(row)
            self.on_expired(row.booking)
            return row.booking, None
        before = row.booking
        self._set_status(row, BookingStatus.CANCELLED, "cancelled by the user")
        return before, row.booking

    # holds ------------------------------------------------------------------------------------------------
    def confirm_hold(self, booking_id: str, payment_reference: str) -> HoldChange:
        self.outage.check("confirm_hold")
        row = self._rows.get(booking_id)
        if row is None:
            return HoldChange(HoldOutcome.NOT_HELD, None)
        outcome = confirm_outcome(row.booking, self.clock(), payment_reference)
        if outcome is HoldOutcome.LAPSED and row.booking.lapsed(self.clock()):
            return self._expire(row)
        if outcome is HoldOutcome.CHANGED:
            row.booking = dataclasses.replace(
                row.booking, status=BookingStatus.CONFIRMED, reason=None, payment_reference=payment_reference
            )
        return HoldChange(outcome, row.booking)

    def extend_hold(self, booking_id: str, hold_seconds: float, max_extensions: int) -> HoldChange:
        self.outage.check("extend_hold")
        row = self._rows.get(booking_id)
        if row is None:
            return HoldChange(HoldOutcome.NOT_HELD, None)
        now = self.clock()
        outcome = extend_outcome(row.booking, now, max_extensions)
        if outcome is HoldOutcome.LAPSED and row.booking.lapsed(now):
            return self._expire(row)
        if outcome is HoldOutcome.CHANGED:
            extensions = row.booking.extensions + 1
            row.booking = dataclasses.replace(
                row.booking, expires_at=now + hold_seconds, extensions=extensions
            )
        return HoldChange(outcome, row.booking)

    def expire(self, booking_id: str) -> Settlement:
        self.outage.check("expire")
        row = self._rows.get(booking_id)
        if row is None or not row.booking.lapsed(self.clock()):
            return Settlement(row.booking if row else None, changed=False)
        return Settlement(self._expire(row).booking, changed=True)

    def lapsed_holds(self, limit: int = 1_000) -> list[Booking]:
        self.outage.check("lapsed_holds")
        now = self.clock()
        lapsed = [row.booking for row in self._rows.values() if row.booking.lapsed(now)]
        return sorted(lapsed, key=lambda booking: booking.expires_at or 0)[:limit]

    def _expire(self, row: _Row) -> HoldChange:
        self._set_status(row, BookingStatus.EXPIRED, HOLD_EXPIRED_REASON)
        return HoldChange(HoldOutcome.LAPSED, row.booking, expired=True)

    def _free_seats(self, section: Section) -> set[int]:
        seats = range(section.first_seat_id, section.last_seat_id + 1)
        return set(seats) - set(self._holder_ids(seats))

    def _set_status(self, row: _Row, status: BookingStatus, reason: str | None) -> None:
        row.booking = dataclasses.replace(row.booking, status=status, reason=reason)
        row.seats_active = status.holds_seats
        row.updated_at = self.clock()

    # reads ------------------------------------------------------------------------------------------------
    def get(self, booking_id: str) -> Booking | None:
        self.outage.check("get")
        row = self._rows.get(booking_id)
        return row.booking if row else None

    def holders_of(self, seat_ids: Iterable[int]) -> dict[int, Holder]:
        self.outage.check("holders_of")
        wanted = set(seat_ids)
        return {s: h for s, h in self._active_holders().items() if s in wanted}

    def active_seat_holders(self, performance_id: int) -> dict[int, Holder]:
        self.outage.check("active_seat_holders")
        return {
            seat: (row.booking.booking_id, row.booking.status)
            for row in self._active_rows()
            if row.booking.performance_id == performance_id
            for seat in row.booking.seat_ids
        }

    def pending_accepted_before(
        self, epoch_seconds: float, performance_id: int | None = None, limit: int = 1_000
    ) -> list[Booking]:
        self.outage.check("pending_accepted_before")
        rows = sorted(
            (
                row
                for row in self._rows.values()
                if row.booking.status is BookingStatus.PENDING
                and row.created_at < epoch_seconds
                and performance_id in (None, row.booking.performance_id)
            ),
            key=lambda row: row.created_at,
        )
        return [row.booking for row in rows[:limit]]

    def log_reconcile(self, entry: ReconcileEntry) -> None:
        self.outage.check("log_reconcile")
        self.reconcile_log.setdefault(entry.dedup_key, entry)

    # the reconcile job's lookups (adapters/mysql_reconcile.py) ----------------------------------------------
    def statuses(self, booking_ids: Iterable[str]) -> dict[str, BookingStatus]:
        self.outage.check("statuses")
        return {b: self._rows[b].booking.status for b in booking_ids if b in self._rows}

    def recently_active_performances(self, within_seconds: int) -> list[int]:
        self.outage.check("recently_active_performances")
        since = self.clock() - within_seconds
        return sorted({r.booking.performance_id for r in self._rows.values() if r.updated_at >= since})

    def open_reconcile_entries(
        self, action: str, closed_by: str, performance_id: int | None = None
    ) -> list[str]:
        self.outage.check("open_reconcile_entries")
        return sorted(
            {
                entry.booking_id
                for entry in self.reconcile_log.values()
                if entry.action == action
                and entry.booking_id is not None
                and f"{closed_by}:{entry.booking_id}" not in self.reconcile_log
                and performance_id in (None, entry.performance_id)
            }
        )

    # for the tests ------------------------------------------------------------------------------------------
    def actions(self, booking_id: str) -> list[str]:
        """The reconcile_log actions written for one booking, in the order they were written."""
        return [e.action for e in self.reconcile_log.values() if e.booking_id == booking_id]

    def of_user(self, user_id: str) -> list[Booking]:
        """Every booking of one user, in the order they were stored."""
        return [row.booking for row in self._rows.values() if row.booking.user_id == user_id]

    def _active_rows(self) -> Iterator[_Row]:
        """Rows whose seats are active and held (a lapsed hold's stay active until expired: held by none)."""
        now = self.clock()
        return (row for row in self._rows.values() if row.seats_active and not row.booking.lapsed(now))

    def _active_holders(self) -> dict[int, Holder]:
        return {
            seat: (row.booking.booking_id, row.booking.status)
            for row in self._active_rows()
            for seat in row.booking.seat_ids
        }

    def _holder_ids(self, seat_ids: Iterable[int]) -> dict[int, str]:
        """seat -> holding booking; a lapsed holder of one of the seats is expired first, as MySQL's writes
        do (and `on_expired` told), and holds nothing."""
        seat_ids = list(seat_ids)
        now = self.clock()
        for row in [row for row in self._rows.values() if row.seats_active]:
            if row.booking.lapsed(now) and not set(seat_ids).isdisjoint(row.booking.seat_ids):
                self.on_expired(self._expire(row).booking)  # type: ignore[arg-type]
        holders = self._active_holders()
        return {seat: holders[seat][0] for seat in sorted(seat_ids) if seat in holders}


class InMemoryCatalogue:
    """The CatalogueStore port in memory: events and performances with contiguous seat ids, as MySQL has
    them (adapters/mysql.py CatalogueRepository)."""

    def __init__(self) -> None:
        self._events: dict[int, Event] = {}
        self._performances: dict[int, Performance] = {}
        self._ids = itertools.count(1)
        self._next_seat = 1

    def create_event(
        self, spec: EventSpec, before_commit: Callable[[Event], object] = lambda event: None
    ) -> Event:
        event_id = next(self._ids)
        performances = tuple(
            self._performance(event_id, spec, p.strategy, p.starts_at) for p in spec.performances
        )
        event = Event(event_id, spec.name, spec.venue, performances)
        before_commit(event)
        self._events[event_id] = event
        self._performances.update((p.performance_id, p) for p in performances)
        return event

    def _performance(self, event_id: int, spec: EventSpec, strategy: str, starts_at: Any) -> Performance:
        performance_id = next(self._ids)
        sections = []
        for section in spec.sections:
            sections.append(
                Section(
                    next(self._ids),
                    performance_id,
                    section.name,
                    section.price,
                    section.rows,
                    section.seats_per_row,
                    self._next_seat,
                )
            )
            self._next_seat += section.seat_count
        return Performance(performance_id, event_id, starts_at.isoformat(), strategy, tuple(sections))

    def list_events(self, limit: int, after_event_id: int) -> list[Event]:
        return [self._events[e] for e in sorted(self._events) if e > after_event_id][:limit]

    def get_event(self, event_id: int) -> Event | None:
        return self._events.get(event_id)

    def get_performance(self, performance_id: int) -> Performance | None:
        return self._performances.get(performance_id)

    def existing_seat_ids(self, seat_ids: Iterable[int]) -> set[int]:
        return {s for s in seat_ids if any(p.section_of(s) for p in self._performances.values())}

    def event_ids(self) -> list[int]:
        return sorted(self._events)

    def performance_ids(self) -> list[int]:
        return sorted(self._performances)

    def seat_id_ranges(self) -> list[range]:
        return [p.seat_ids for p in self._performances.values()]


class RecordingQueue:
    """The BookingQueue port: keeps what was published; `outage.down()` makes the next sends raise."""

    def __init__(self) -> None:
        self.messages: list[Mapping[str, Any]] = []
        self.outage = Outage("queue")

    def publish(self, message: Mapping[str, Any]) -> None:
        self.outage.check("publish")
        self.messages.append(message)

    def bodies(self) -> list[str]:
        return [message["body"] for message in self.messages]


class RecordingStream:
    """The RecordStream port: one shard, sequence numbers are 1-based positions (Kinesis' read contract)."""

    SHARD = "shard-0"

    def __init__(self) -> None:
        self.records: list[tuple[str, str]] = []  # (data, partition key)
        self.calls: list[list[tuple[str, str]]] = []  # what each put / put_many appended at once
        self.outage = Outage("stream")

    def put(self, data: str, partition_key: str) -> str:
        return self.put_many([(data, partition_key)])[0]

    def put_many(self, records: Sequence[tuple[str, str]]) -> list[str]:
        self.outage.check("put")
        self.calls.append(list(records))
        first = len(self.records) + 1
        self.records.extend(records)
        return [str(position) for position in range(first, len(self.records) + 1)]

    def read_since(self, positions: Mapping[str, str]) -> Iterator[tuple[str, str, str]]:
        start = int(positions.get(self.SHARD, "0"))
        for index in range(start, len(self.records)):
            yield self.SHARD, str(index + 1), self.records[index][0]

    def data(self) -> list[str]:
        return [data for data, _ in self.records]


class DictKeyValueStore:
    """The KeyValueStore port (the seat ledger's RocksDB) as a dict; a batch is applied all at once."""

    def __init__(self) -> None:
        self.values: dict[str, str] = {}

    def get(self, key: str) -> str | None:
        return self.values.get(key)

    def write(self, puts: Mapping[str, str], deletes: Iterable[str] = ()) -> None:
        for key in deletes:
            self.values.pop(key, None)
        self.values.update(puts)
