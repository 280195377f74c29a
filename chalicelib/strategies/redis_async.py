"""`redis_async` (the default): take the seats in Redis with one Lua script, answer 202, persist later.

Request path:  reserve_seats.lua (all seats or none, records the booking) -> SQS send -> 202 PENDING.
               If the send fails the seats are given back and the caller gets 503: nothing is booked.
Consumer path: MySQL insert of the booking and its seats in one transaction (the unique guard is the last line
               of defence) -> seats marked BOOKED in Redis. A redelivery finds the row and changes nothing.
Giving up:     after the last retry, or for a poison message: the booking becomes FAILED in MySQL, its seats
               are released in Redis (owner-checked) and a reconcile_log row says why.

Finishing, giving up and aligning Redis with MySQL are shared with the other asynchronous strategies
(strategies/async_common.py).
"""

from __future__ import annotations

import logging

from chalicelib.adapters.redis_seats import BookingRecord, RedisSeatStore, ReserveResult
from chalicelib.domain.errors import (
    BookingExists,
    NotFound,
    SeatAlreadyBooked,
    SeatUnavailable,
    ServiceUnavailable,
)
from chalicelib.domain.messages import BookingRequested
from chalicelib.domain.models import Booking, BookingRequest, BookingStatus
from chalicelib.services.ports import BookingQueue, BookingStore
from chalicelib.services.seat_state import SeatStateService
from chalicelib.strategies.async_common import AsyncBookingFinisher, pending_record

log = logging.getLogger(__name__)


class RedisAsyncStrategy(AsyncBookingFinisher):
    name = "redis_async"

    def __init__(
        self,
        seat_store: RedisSeatStore,
        seat_state: SeatStateService,
        bookings: BookingStore,
        queue: BookingQueue,
    ) -> None:
        super().__init__(seat_store, bookings)
        self._seat_state = seat_state
        self._queue = queue

    # request path ---------------------------------------------------------------------------------------
    def book(self, request: BookingRequest) -> Booking:
        record = pending_record(request)
        self._reserve(record, request)
        try:
            self._queue.publish({"body": BookingRequested.of(request).to_json()})
        except Exception as exc:
            # The event may or may not have left: mark the record FAILED first, so a consumer that does get it
            # records FAILED instead of confirming seats we are about to give back.
            log.warning("booking %s: queue send failed (%s); releasing its seats", request.booking_id, exc)
            self._seats.mark_record(request.booking_id, BookingStatus.FAILED, "booking queue unavailable")
            self._seats.release(request.booking_id, request.performance_id, request.seat_ids)
            raise ServiceUnavailable("the booking queue is unavailable; nothing was booked") from exc
        return Booking.from_request(request, BookingStatus.PENDING)

    def _reserve(self, record: BookingRecord, request: BookingRequest) -> None:
        outcome = self._seats.reserve(record)
        if outcome.result is ReserveResult.NOT_LOADED and request.performance is not None:
            self._seat_state.publish(request.performance)
            outcome = self._seats.reserve(record)
        if outcome.result is ReserveResult.UNAVAILABLE:
            raise SeatUnavailable(list(outcome.seat_ids))
        if outcome.result is ReserveResult.UNKNOWN_SEATS:
            raise NotFound(f"seat(s) {list(outcome.seat_ids)} not found in this performance")
        if outcome.result is ReserveResult.NOT_LOADED:
            raise ServiceUnavailable("seat state is not available")

    # consumer path ---------------------------------------------------------------------------------------
    def finish(self, message: BookingRequested) -> BookingStatus:
        record = self._seats.read_record(message.booking_id)
        if record is not None and record.status is BookingStatus.FAILED:
            # Given up on earlier (e.g. MySQL was down at the last retry): the seats are already back.
            return self._store_final(message, BookingStatus.FAILED, record.reason or "gave up earlier")
        try:
            self._bookings.insert(self._booking(message, BookingStatus.CONFIRMED))
        except BookingExists:
            return self._align_with_database(message.booking_id)
        except SeatAlreadyBooked as exc:
            return self._reject_by_database_guard(message, str(exc))
        self._seats.confirm(message.booking_id, message.performance_id, message.seat_ids)
        self._seats.mark_record(message.booking_id, BookingStatus.CONFIRMED)
        return BookingStatus.CONFIRMED
