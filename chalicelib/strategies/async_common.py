"""What every asynchronous strategy does once a booking has been accepted: make it final in MySQL,
compensate when no delivery can succeed, and keep the Redis seat map in line with MySQL.

MySQL is the arbiter of a booking's fate: whoever inserts the booking row first (a consumer with CONFIRMED or
REJECTED, a cancel with CANCELLED, a compensation with FAILED) decides it, and everyone else aligns Redis with
that row. Every Redis change is owner-checked: a late or repeated step never touches another booking's seat.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from chalicelib.adapters.redis_seats import BookingRecord, RedisSeatStore
from chalicelib.domain.errors import BookingExists, SeatUnavailable, ServiceUnavailable
from chalicelib.domain.messages import BookingRequested
from chalicelib.domain.models import Booking, BookingRequest, BookingStatus, ReconcileEntry
from chalicelib.services.ports import BookingStore
from chalicelib.services.seat_state import SeatStateService
from chalicelib.strategies.seat_mirror import mirror_released

log = logging.getLogger(__name__)


def pending_record(request: BookingRequest) -> BookingRecord:
    return BookingRecord(
        booking_id=request.booking_id,
        performance_id=request.performance_id,
        user_id=request.user_id,
        seat_ids=request.seat_ids,
        strategy=request.strategy,
        status=BookingStatus.PENDING,
    )


def refuse_seats_shown_taken(
    seats: RedisSeatStore, seat_state: SeatStateService, request: BookingRequest
) -> None:
    """The in-line strategies' early answer: a seat the map already shows taken needs no place in line."""
    taken = seats.taken_among(request.performance_id, request.seat_ids)
    if taken is None and request.performance is not None:
        seat_state.publish(request.performance)  # the map was not loaded (e.g. Redis restarted)
        taken = seats.taken_among(request.performance_id, request.seat_ids)
    if taken:
        raise SeatUnavailable(taken)


def accept_in_line(
    seats: RedisSeatStore, request: BookingRequest, send: Callable[[], object], channel: str
) -> Booking:
    """Keep the booking's record (PENDING, no seats held), then send the request -> 202 PENDING. A failed
    send marks the record FAILED, so a request that did leave is recorded FAILED, never confirmed."""
    seats.remember(pending_record(request))
    try:
        send()
    except Exception as exc:
        log.warning("booking %s: %s send failed: %s", request.booking_id, channel, exc)
        seats.mark_record(request.booking_id, BookingStatus.FAILED, f"{channel} unavailable")
        raise ServiceUnavailable(f"the {channel} is unavailable; nothing was booked") from exc
    return Booking.from_request(request, BookingStatus.PENDING)


class AsyncBookingFinisher:
    name: str

    def __init__(self, seat_store: RedisSeatStore, bookings: BookingStore) -> None:
        self._seats = seat_store
        self._bookings = bookings

    def release(self, booking: Booking) -> None:
        mirror_released(self._seats, booking)

    def give_up(self, booking_id: str, reason: str, message: BookingRequested | None) -> BookingStatus | None:
        """Compensate a booking that can never be persisted. Safe to call again for the same booking."""
        record = self._seats.read_record(booking_id)
        performance_id = message.performance_id if message else record.performance_id if record else None
        seat_ids = message.seat_ids if message else record.seat_ids if record else ()
        if performance_id is None:
            return None  # nothing is known of this booking anywhere: there is nothing to give back
        # The record goes FAILED first: from here on no delivery of this message may confirm the booking.
        self._seats.mark_record(booking_id, BookingStatus.FAILED, reason)
        try:
            existing = self._bookings.get(booking_id)
        except ServiceUnavailable:
            # MySQL is down: give the seats back to other buyers now. The message goes to the DLQ; when it
            # is redriven, finish() sees the FAILED record and stores FAILED. Had MySQL in fact confirmed the
            # booking, the unique guard still keeps the seats single-sold and the redrive realigns Redis.
            self._seats.release(booking_id, performance_id, seat_ids)
            raise
        if existing is not None:
            return self._align_with_database(booking_id)
        self._seats.release(booking_id, performance_id, seat_ids)
        failed = BookingRequested(
            booking_id=booking_id,
            performance_id=performance_id,
            user_id=message.user_id if message else record.user_id if record else "unknown",
            seat_ids=seat_ids,
            strategy=self.name,
        )
        return self._store_final(failed, BookingStatus.FAILED, reason)

    # helpers --------------------------------------------------------------------------------------------
    def _booking(
        self, message: BookingRequested, status: BookingStatus, reason: str | None = None
    ) -> Booking:
        return Booking(
            booking_id=message.booking_id,
            performance_id=message.performance_id,
            user_id=message.user_id,
            seat_ids=message.seat_ids,
            status=status,
            strategy=self.name,
            reason=reason,
        )

    def _store_final(
        self, message: BookingRequested, status: BookingStatus, reason: str, repair: bool = True
    ) -> BookingStatus:
        """Record a booking that holds no seats (FAILED/REJECTED); the first final row wins."""
        try:
            self._bookings.insert(self._booking(message, status, reason))
        except BookingExists:
            return self._align_with_database(message.booking_id)
        self._seats.release(message.booking_id, message.performance_id, message.seat_ids)
        self._seats.mark_record(message.booking_id, status, reason)
        if not repair:
            return status  # an ordinary outcome (a seat taken earlier in line), not something to audit
        self._bookings.log_reconcile(
            ReconcileEntry(
                action=f"booking_{status.value.lower()}",
                booking_id=message.booking_id,
                performance_id=message.performance_id,
                detail={"reason": reason, "seat_ids": list(message.seat_ids), "released_in_redis": True},
            )
        )
        return status

    def _reject_by_database_guard(self, message: BookingRequested, detail: str) -> BookingStatus:
        # Redis said the seats were free but MySQL holds another active booking for one: Redis had drifted
        # (e.g. lost data). The guard kept the seat single-sold; this booking is rejected, nothing is held,
        # and Redis is told who really has the seats.
        log.error("booking %s refused by the database guard: %s", message.booking_id, detail)
        status = self._store_final(
            message, BookingStatus.REJECTED, "a seat was already sold (database guard)"
        )
        holders = self._bookings.active_seat_holders(message.performance_id)
        for seat in message.seat_ids:
            holder = holders.get(seat)
            if holder is not None and holder[1] is BookingStatus.CONFIRMED:
                self._seats.confirm(holder[0], message.performance_id, [seat])
        return status

    def _align_with_database(self, booking_id: str) -> BookingStatus:
        """MySQL already has this booking: make Redis say the same and report MySQL's status."""
        existing = self._bookings.get(booking_id)
        if existing is None:
            raise ServiceUnavailable(f"booking {booking_id} vanished while aligning")
        if existing.status is BookingStatus.CONFIRMED:
            self._seats.confirm(booking_id, existing.performance_id, existing.seat_ids)
        elif not existing.status.holds_seats:
            self._seats.release(booking_id, existing.performance_id, existing.seat_ids)
        self._seats.mark_record(booking_id, existing.status, existing.reason)
        return existing.status
