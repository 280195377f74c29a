"""`stream_state`'s persister: each changelog decision -> MySQL (compare-and-set), then Redis (__init__)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping

from chalicelib.domain.errors import SeatAlreadyBooked, UserLimit
from chalicelib.domain.messages import BookingRequested, LedgerEntry, LedgerOutcome, SeatsReleaseRequested
from chalicelib.domain.models import Booking, BookingStatus
from chalicelib.services.ports import BookingStore, RecordStream, SeatStore
from chalicelib.strategies.async_common import AsyncBookingFinisher
from chalicelib.strategies.stream_state.strategy import NAME, put_ledger_release, release_in_ledger

log = logging.getLogger(__name__)


class DecisionPersister(AsyncBookingFinisher):
    """Changelog entry -> MySQL (the truth), then the Redis seat map and the booking's record."""

    name = NAME

    def __init__(
        self,
        seat_store: SeatStore,
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
        if entry.outcome in (LedgerOutcome.RELEASED, LedgerOutcome.DEADLINE):
            return None  # a cancel or a refusal that MySQL already holds; a deadline MySQL set itself
        message = BookingRequested(
            entry.booking_id, entry.performance_id, entry.user_id, entry.seat_ids, NAME, entry.expires_at
        )
        if entry.outcome == LedgerOutcome.REJECTED:
            settled = self._bookings.settle(
                entry.booking_id, BookingStatus.REJECTED, entry.reason or "seat taken"
            )
            return self._finished(settled.booking, message)
        try:
            settled = self._bookings.settle(
                entry.booking_id, BookingStatus.CONFIRMED, seat_ids=entry.seat_ids
            )
        except SeatAlreadyBooked as exc:
            return self._refused_by_guard(message, str(exc))
        except UserLimit:
            # MySQL counts the user's seats across every section (the ledger sees its own only): refused,
            # and (below) the ledger lets go of the seats it took for this booking.
            settled = self._bookings.settle(entry.booking_id, BookingStatus.REJECTED, UserLimit.reason)
        status = self._finished(settled.booking, message)
        if not status.holds_seats:  # HELD (a hold) keeps them as CONFIRMED does
            # The ledger took the seats for a booking MySQL had already ended (cancelled or failed first) or
            # refused (the limit per person): the ledger must let go of the seats it took — the entry's, which
            # a best available booking refused in MySQL does not have. A second release frees nothing.
            ended = settled.booking or message.as_booking(status)
            release_in_ledger(self, self._bookings, ended.with_seats(entry.seat_ids))
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
