"""`stream_state`: the Kafka Streams + RocksDB design on AWS — a stream processor owns each section's seats
in an embedded store and decides bookings without touching MySQL; MySQL is written afterwards.

Request path:   a seat the map already shows taken -> 409 at once; otherwise the booking is journaled in
                MySQL (PENDING, waiting in line, no seats held) and the request is put on the request stream
                (Kinesis, partition key = the section of the lowest seat) -> 202 PENDING: a place in line.
Processor:      per shard, in order (one invocation per shard at a time): catch the ledger up with the
                changelog, then for each request: are its seats free in the ledger (RocksDB)? take them :
                refuse -> append the decision to the changelog (Kinesis). No MySQL, no Redis, no lock.
Persister:      a second consumer reads the changelog and settles each decision in MySQL (PENDING ->
                CONFIRMED/REJECTED, a compare-and-set: idempotent), then updates the Redis seat map and the
                booking's record. Its event source retries a failing batch until MySQL takes it (no batch is
                parked); a booking the persister never settles is failed by the reconcile job.
Cancel:         MySQL first (as for every strategy), then a release command on the request stream, behind
                the booking's request in the same partition, so the ledger frees the seats in order.

The ledger is a cache of the changelog, as a Kafka Streams store is of its changelog topic: a consumer that
starts with an empty or stale directory replays the changelog from where its store left off before deciding
anything, and it catches up again before every batch, since Lambda may hand a shard to another container
between batches. Every state change is an entry applied the same way live and in replay, so replay is
idempotent; a request whose booking the ledger already decided re-emits the same decision (an at-least-once
redelivery after a crash between deciding and checkpointing changes nothing).

Where it breaks: a booking that spans sections is ordered only within its lowest seat's section. Two such
clashing bookings decided by different processors can both be "confirmed" by their ledgers; MySQL's unique
guard lets one in, the persister marks the other REJECTED and sends the ledger a release that names the real
holders. Clients see only what the persister stored, so nobody is told CONFIRMED and then REJECTED.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Protocol

from chalicelib.adapters.redis_seats import RedisSeatStore
from chalicelib.domain.errors import SeatAlreadyBooked
from chalicelib.domain.messages import (
    BookingRequested,
    LedgerEntry,
    LedgerOutcome,
    SeatsReleaseRequested,
)
from chalicelib.domain.models import (
    LEDGER_RELEASE_PENDING_ACTION,
    Booking,
    BookingRequest,
    BookingStatus,
    Performance,
    ReconcileEntry,
)
from chalicelib.services.ports import BookingStore
from chalicelib.services.seat_state import SeatStateService
from chalicelib.strategies.async_common import (
    AsyncBookingFinisher,
    journal_in_line,
    refuse_seats_shown_taken,
    send_or_fail,
)
from chalicelib.strategies.partitioning import section_partition
from chalicelib.strategies.seat_mirror import mirror

log = logging.getLogger(__name__)

NAME = "stream_state"
POSITIONS_KEY = "changelog-positions"


class RecordStream(Protocol):
    def put(self, data: str, partition_key: str) -> str: ...

    def read_since(self, positions: Mapping[str, str]) -> Iterator[tuple[str, str, str]]: ...


class KeyValueStore(Protocol):
    def get(self, key: str) -> str | None: ...

    def write(self, puts: Mapping[str, str], deletes: Iterable[str] = ()) -> None: ...


def _seat_key(performance_id: int, seat_id: int) -> str:
    return f"seat:{performance_id}:{seat_id}"


def _booking_key(booking_id: str) -> str:
    return f"booking:{booking_id}"


# --- the request path --------------------------------------------------------------------------------------
class StreamStateStrategy:
    name = NAME

    def __init__(
        self,
        seat_store: RedisSeatStore,
        seat_state: SeatStateService,
        bookings: BookingStore,
        request_stream: RecordStream,
        partition_of: Callable[[int, tuple[int, ...]], str],
    ) -> None:
        self._seats = seat_store
        self._seat_state = seat_state
        self._bookings = bookings
        self._requests = request_stream
        self._partition_of = partition_of

    def book(self, request: BookingRequest) -> Booking:
        refuse_seats_shown_taken(self._seats, self._seat_state, request)
        journal_in_line(self._bookings, self._seats, request)
        partition = section_partition(request.performance, request.performance_id, request.seat_ids)
        data = BookingRequested.of(request).to_json()
        return send_or_fail(
            self._bookings,
            self._seats,
            request,
            lambda: self._requests.put(data, partition),
            "request stream",
        )

    def resend(self, booking: Booking, performance: Performance) -> None:
        """Put a journaled PENDING booking's request on the stream again (a retry found it unsent; the ledger
        decides a booking once and re-emits that decision for a second copy)."""
        partition = section_partition(performance, booking.performance_id, booking.seat_ids)
        self._requests.put(BookingRequested.of(booking).to_json(), partition)

    def release(self, booking: Booking) -> None:
        """The booking is CANCELLED in MySQL: free the seats in the map now and in the ledger in line."""
        mirror(self._seats, booking)
        release_in_ledger(self, self._bookings, booking)

    def send_ledger_release(self, booking: Booking) -> None:
        put_ledger_release(self._requests, self._partition_of, booking)


def put_ledger_release(
    requests: RecordStream, partition_of: Callable[[int, tuple[int, ...]], str], booking: Booking
) -> None:
    """Put the booking's release on the request stream, behind its request in the same partition (the ledger
    frees only seats the booking holds there, so sending it twice changes nothing)."""
    command = SeatsReleaseRequested(
        booking.booking_id, booking.performance_id, booking.user_id, booking.seat_ids
    )
    requests.put(command.to_json(), partition_of(booking.performance_id, booking.seat_ids))


class LedgerReleases(Protocol):
    def send_ledger_release(self, booking: Booking) -> None: ...


def release_in_ledger(sender: LedgerReleases, bookings: BookingStore, booking: Booking) -> None:
    """Tell the ledger to let go of a booking MySQL says holds nothing (cancelled, failed). If the release
    cannot be sent, the ledger would keep refusing these seats: the reconcile job resends it (logged where it
    looks for it)."""
    try:
        sender.send_ledger_release(booking)
    except Exception as exc:
        log.error("booking %s: release not sent to the ledger: %s", booking.booking_id, exc)
        bookings.log_reconcile(
            ReconcileEntry(
                action=LEDGER_RELEASE_PENDING_ACTION,
                booking_id=booking.booking_id,
                performance_id=booking.performance_id,
                detail={"seat_ids": list(booking.seat_ids), "error": str(exc)[:200]},
            )
        )


# --- the stream processor's state --------------------------------------------------------------------------
class SeatLedger:
    """Seat -> holding booking, booking -> outcome, and how far the changelog has been read: the processor's
    embedded state. Thread-safe: shard workers of one process share it (RocksDB has one opener per dir)."""

    def __init__(self, open_store: Callable[[], KeyValueStore], changelog: RecordStream) -> None:
        self._open_store = open_store
        self._changelog = changelog
        self._store: KeyValueStore | None = None
        self._positions: dict[str, str] = {}
        self._lock = threading.RLock()
        self.replayed_entries = 0

    def catch_up(self) -> int:
        """Apply the changelog entries this store has not seen (all of them for a new store) -> count."""
        with self._lock:
            store = self._opened()
            fresh = not self._positions
            applied = 0
            for shard_id, sequence, data in self._changelog.read_since(self._positions):
                self._apply(store, LedgerEntry.from_json(data), (shard_id, sequence))
                applied += 1
            self.replayed_entries += applied
            if fresh and applied:
                log.info("seat ledger: rebuilt from %d changelog entries", applied)
            return applied

    def decide(self, command: BookingRequested | SeatsReleaseRequested) -> LedgerEntry | None:
        """Decide one command against the ledger and apply it -> the changelog entry to append (None: no
        change to record)."""
        with self._lock:
            store = self._opened()
            if isinstance(command, SeatsReleaseRequested):
                entry = _release_entry(command)
            else:
                known = store.get(_booking_key(command.booking_id))
                if known is not None:
                    return _replayed_decision(command, json.loads(known))
                entry = self._decide_request(store, command)
            self._apply(store, entry, None)
            return entry

    def holder(self, performance_id: int, seat_id: int) -> str | None:
        with self._lock:
            return self._opened().get(_seat_key(performance_id, seat_id))

    # internals ------------------------------------------------------------------------------------------
    def _opened(self) -> KeyValueStore:
        if self._store is None:
            self._store = self._open_store()
            self._positions = json.loads(self._store.get(POSITIONS_KEY) or "{}")
        return self._store

    @staticmethod
    def _decide_request(store: KeyValueStore, request: BookingRequested) -> LedgerEntry:
        taken = [
            seat
            for seat in request.seat_ids
            if store.get(_seat_key(request.performance_id, seat)) not in (None, request.booking_id)
        ]
        outcome = LedgerOutcome.REJECTED if taken else LedgerOutcome.CONFIRMED
        return LedgerEntry(
            booking_id=request.booking_id,
            performance_id=request.performance_id,
            user_id=request.user_id,
            seat_ids=request.seat_ids,
            outcome=outcome,
            reason=f"seat(s) {taken} were taken earlier in line" if taken else None,
        )

    def _apply(self, store: KeyValueStore, entry: LedgerEntry, position: tuple[str, str] | None) -> None:
        """The one state transition, used live and in replay; atomic with the changelog position."""
        puts: dict[str, str] = {}
        deletes: list[str] = []
        if entry.outcome == LedgerOutcome.CONFIRMED:
            puts.update({_seat_key(entry.performance_id, s): entry.booking_id for s in entry.seat_ids})
        elif entry.outcome == LedgerOutcome.RELEASED:
            deletes = [
                _seat_key(entry.performance_id, s)
                for s in entry.seat_ids
                if store.get(_seat_key(entry.performance_id, s)) == entry.booking_id
            ]
            # The real holders MySQL named, unless the ledger has already released one of them (its cancel was
            # applied first): writing it back would leave a seat refused for a booking that holds nothing.
            puts.update(
                {
                    _seat_key(entry.performance_id, seat): holder
                    for seat, holder in entry.holders
                    if not _released(store, holder)
                }
            )
        puts[_booking_key(entry.booking_id)] = json.dumps({"outcome": entry.outcome, "reason": entry.reason})
        if position is not None:
            self._positions[position[0]] = position[1]
            puts[POSITIONS_KEY] = json.dumps(self._positions)
        store.write(puts, [key for key in deletes if key not in puts])


def _released(store: KeyValueStore, booking_id: str) -> bool:
    known = store.get(_booking_key(booking_id))
    return known is not None and json.loads(known)["outcome"] == LedgerOutcome.RELEASED


def _release_entry(command: SeatsReleaseRequested) -> LedgerEntry:
    return LedgerEntry(
        booking_id=command.booking_id,
        performance_id=command.performance_id,
        user_id=command.user_id,
        seat_ids=command.seat_ids,
        outcome=LedgerOutcome.RELEASED,
        holders=command.holders,
    )


def _replayed_decision(request: BookingRequested, known: dict) -> LedgerEntry | None:
    if known["outcome"] == LedgerOutcome.RELEASED:
        return None  # decided and released since: the persister has both already
    return LedgerEntry(
        booking_id=request.booking_id,
        performance_id=request.performance_id,
        user_id=request.user_id,
        seat_ids=request.seat_ids,
        outcome=known["outcome"],
        reason=known.get("reason"),
    )


# --- the asynchronous persister ----------------------------------------------------------------------------
class DecisionPersister(AsyncBookingFinisher):
    """Changelog entry -> MySQL (the truth), then the Redis seat map and the booking's record."""

    name = NAME

    def __init__(
        self,
        seat_store: RedisSeatStore,
        bookings: BookingStore,
        request_stream: RecordStream,
        partition_of: Callable[[int, tuple[int, ...]], str],
        seat_holders: Callable[[int], Mapping[int, tuple[str, BookingStatus]]],
    ) -> None:
        super().__init__(seat_store, bookings)
        self._requests = request_stream
        self._partition_of = partition_of
        self._seat_holders = seat_holders

    def persist(self, entry: LedgerEntry) -> BookingStatus | None:
        if entry.outcome == LedgerOutcome.RELEASED:
            return None  # a cancel or a refusal that MySQL already holds
        message = BookingRequested(
            entry.booking_id, entry.performance_id, entry.user_id, entry.seat_ids, NAME
        )
        if entry.outcome == LedgerOutcome.REJECTED:
            settled = self._bookings.settle(
                entry.booking_id, BookingStatus.REJECTED, entry.reason or "seat taken"
            )
            return self._finished(settled.booking, message)
        try:
            settled = self._bookings.settle(entry.booking_id, BookingStatus.CONFIRMED)
        except SeatAlreadyBooked as exc:
            return self._refused_by_guard(message, str(exc))
        status = self._finished(settled.booking, message)
        if status is not BookingStatus.CONFIRMED:
            # The ledger took the seats for a booking MySQL had already ended (cancelled or failed first):
            # the ledger must let them go. Sent again if a cancel sent it too: a second release frees nothing.
            release_in_ledger(self, self._bookings, settled.booking or message.as_booking(status))
        return status

    def _released(self, booking: Booking) -> None:
        release_in_ledger(self, self._bookings, booking)  # the ledger may have decided it CONFIRMED

    def send_ledger_release(self, booking: Booking) -> None:
        put_ledger_release(self._requests, self._partition_of, booking)

    def _refused_by_guard(self, message: BookingRequested, detail: str) -> BookingStatus:
        # Another partition's booking got a shared seat first (or the ledger drifted): MySQL decides, and
        # the ledger is told to let go of these seats and who really holds them. The release goes first:
        # if storing the refusal then fails, the redelivery finds the guard again and sends it again.
        holders = self._seat_holders(message.performance_id)
        real = tuple(
            (seat, holders[seat][0])
            for seat in message.seat_ids
            if seat in holders and holders[seat][1].holds_seats
        )
        command = SeatsReleaseRequested(
            message.booking_id, message.performance_id, message.user_id, message.seat_ids, real
        )
        self._requests.put(command.to_json(), self._partition_of(message.performance_id, message.seat_ids))
        log.warning("booking %s: refused by the database guard (%s)", message.booking_id, detail)
        reason = f"a seat was already sold (database guard): {sorted(seat for seat, _ in real)}"
        settled = self._bookings.settle(message.booking_id, BookingStatus.REJECTED, reason)
        return self._finished(settled.booking, message)
