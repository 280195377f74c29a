"""What every asynchronous strategy does with a booking between its 202 and its final status.

MySQL is the journal: an accepted booking's row is committed before its 202 leaves (PENDING: holding its
seats for redis_async, waiting in line for fifo_partition and stream_state). Whatever ends it (a consumer,
the stream persister, a cancel, a give-up, the reconcile job) ends it the same way: a compare-and-set from
PENDING under the row's lock (`BookingRepository.settle`). Whoever settles it first decides it; every later
step reads that decision and aligns Redis with it. So a FAILED booking stays FAILED (no redrive can confirm
it), a cancelled one stays cancelled, and a redelivered message changes nothing: no idempotency record needed.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable

from chalicelib.domain.errors import BookingExists, ServiceUnavailable
from chalicelib.domain.messages import BookingRequested
from chalicelib.domain.models import Booking, BookingRequest, BookingStatus, ReconcileEntry
from chalicelib.domain.seat_holds import BookingRecord
from chalicelib.services.ports import BookingStore, SeatStore
from chalicelib.services.seat_state import SeatStateService
from chalicelib.strategies.seat_mirror import mirror, refusal

log = logging.getLogger(__name__)
NEVER_JOURNALED = "no accepted booking has this id (it never reached MySQL)"


def pending_record(request: BookingRequest) -> BookingRecord:
    return BookingRecord(
        booking_id=request.booking_id,
        performance_id=request.performance_id,
        user_id=request.user_id,
        seat_ids=request.seat_ids,
        strategy=request.strategy,
        status=BookingStatus.PENDING,
        expires_at=request.expires_at,
    )


def refuse_seats_shown_taken(seats: SeatStore, seat_state: SeatStateService, request: BookingRequest) -> None:
    """The in-line strategies' early answer: a seat the map already shows taken needs no place in line. (A
    best available request names no seats: its turn decides.)"""
    if not request.seat_ids:
        return
    taken = seats.taken_among(request.performance_id, request.seat_ids)
    if taken is None and request.performance is not None:
        seat_state.publish(request.performance)  # the map was not loaded (e.g. Redis restarted)
        taken = seats.taken_among(request.performance_id, request.seat_ids)
    if taken:
        raise refusal(seats, request.performance_id, taken)


def journal_in_line(bookings: BookingStore, seats: SeatStore, request: BookingRequest) -> None:
    """The in-line strategies' journal entry: the booking in MySQL, PENDING and holding nothing (its place in
    line is the message that follows), then its record in Redis (what GET answers while MySQL is away)."""
    bookings.insert_in_line(Booking.from_request(request, BookingStatus.PENDING), request.idempotency_key)
    try:
        seats.remember(pending_record(request))
    except ServiceUnavailable as exc:  # MySQL has it: GET answers from there
        log.warning("booking %s: no Redis record (%s)", request.booking_id, exc)


def send_or_fail(
    bookings: BookingStore,
    seats: SeatStore,
    request: BookingRequest,
    send: Callable[[], object],
    channel: str,
) -> Booking:
    """Send the journaled request on -> 202 PENDING. A send that fails settles the booking FAILED before the
    503 (nothing is booked); if it did leave after all, its consumer finds FAILED and changes nothing."""
    try:
        send()
    except Exception as exc:
        log.warning("booking %s: %s send failed: %s", request.booking_id, channel, exc)
        fail_unsent(bookings, seats, request.booking_id, f"{channel} unavailable")
        raise ServiceUnavailable(f"the {channel} is unavailable; nothing was booked") from exc
    return Booking.from_request(request, BookingStatus.PENDING)


def fail_unsent(bookings: BookingStore, seats: SeatStore, booking_id: str, reason: str) -> None:
    try:
        settled = bookings.settle(booking_id, BookingStatus.FAILED, reason)
    except ServiceUnavailable as exc:
        # Still PENDING in MySQL (and still holding whatever it holds): the reconcile job fails it after the
        # hold deadline, or a retry with the same Idempotency-Key sends it again.
        log.error("booking %s: not sent and not settled FAILED either: %s", booking_id, exc)
        return
    if settled.booking is not None:
        mirror(seats, settled.booking)


class AsyncBookingFinisher:
    """Settling a booking (the consumer side) and giving up on one, shared by the asynchronous strategies."""

    name: str

    def __init__(self, seat_store: SeatStore, bookings: BookingStore) -> None:
        self._seats = seat_store
        self._bookings = bookings

    def release(self, booking: Booking) -> None:
        mirror(self._seats, booking)

    def give_up(self, booking_id: str, reason: str, message: BookingRequested | None) -> BookingStatus | None:
        """No delivery can succeed: the booking becomes FAILED and its seats go back. Safe to call again;
        a booking already final keeps its status (Redis is aligned with it). Raises ServiceUnavailable while
        MySQL is away: the booking stays PENDING until a later give-up or the reconcile job settles it."""
        settled = self._bookings.settle(booking_id, BookingStatus.FAILED, reason)
        if settled.booking is None:
            if message is None:
                return None  # nothing is known of this booking anywhere: there is nothing to give back
            return self._claim_failed(message, reason)
        mirror(self._seats, settled.booking)
        if settled.changed:
            self._log(settled.booking, reason)
            self._released(settled.booking)
        return settled.booking.status

    def _released(self, booking: Booking) -> None:
        """A booking this finisher failed holds nothing any more: let go of whatever else holds its seats
        (the seat map already has; stream_state's ledger overrides this)."""

    def _finished(self, settled_booking: Booking | None, message: BookingRequested) -> BookingStatus:
        """Align Redis with the booking as MySQL now has it -> its status."""
        if settled_booking is None:
            return self._claim_failed(message, NEVER_JOURNALED)
        mirror(self._seats, settled_booking)
        return settled_booking.status

    def _claim_failed(self, message: BookingRequested, reason: str) -> BookingStatus:
        """A booking MySQL has never heard of: claim its id as FAILED, so nothing can ever confirm it."""
        failed = dataclasses.replace(message, strategy=self.name).as_booking(BookingStatus.FAILED, reason)
        try:
            self._bookings.insert(failed)
        except BookingExists:
            stored = self._bookings.get(message.booking_id)
            if stored is None:
                raise ServiceUnavailable(f"booking {message.booking_id} vanished while claiming it") from None
            mirror(self._seats, stored)
            return stored.status
        mirror(self._seats, failed)
        self._log(failed, reason)
        return BookingStatus.FAILED

    def _log(self, booking: Booking, reason: str) -> None:
        self._bookings.log_reconcile(
            ReconcileEntry(
                action=f"booking_{booking.status.value.lower()}",
                booking_id=booking.booking_id,
                performance_id=booking.performance_id,
                detail={"reason": reason, "seat_ids": list(booking.seat_ids), "released_in_redis": True},
            )
        )
