"""`redis_async` (the default): take the seats in Redis with one Lua script, journal the hold in MySQL,
answer 202, confirm later.

Request path:  reserve_seats.lua takes every seat or none (a taken seat -> 409 at once: a refusal never
               touches MySQL) -> the booking is inserted PENDING with its seats active, so MySQL's unique
               guard admits the hold only if no other booking holds a seat (a map that lost a hold can never
               promise the seat twice: the guard refuses, the map is realigned, 409) -> SQS send -> 202.
               A failed send settles the booking FAILED and answers 503: nothing is booked.
Consumer path: PENDING -> CONFIRMED in MySQL (compare-and-set) -> seats marked BOOKED in Redis. A
               redelivery finds it final and changes nothing.
Giving up:     after the last retry, or for a poison message: PENDING -> FAILED, seats released in Redis
               (owner-checked), a reconcile_log row says why. While MySQL is away nothing can be given up:
               the booking stays PENDING (its seats held) and the reconcile job settles it later.

Why the journal: a 202 is a promise, and Redis can lose a hold (eviction, FLUSHALL, a failover to a replica
that missed the last writes). With the hold in MySQL before the 202, every rebuilt or repaired map has it.
The cost is one MySQL transaction per accepted booking (refusals cost none), and no 202 while MySQL cannot
write (503 instead): docs/failure-handling.md.
"""

from __future__ import annotations

import dataclasses
import logging

from chalicelib.domain.errors import (
    CommitUncertain,
    IdempotencyKeyTaken,
    NotFound,
    SeatAlreadyBooked,
    SeatUnavailable,
    ServiceUnavailable,
    UserLimit,
)
from chalicelib.domain.messages import BookingRequested
from chalicelib.domain.models import Booking, BookingRequest, BookingStatus, Performance
from chalicelib.domain.seat_holds import ReserveResult
from chalicelib.services.ports import BookingQueue, BookingStore, SeatStore
from chalicelib.services.seat_state import SeatStateService
from chalicelib.strategies.async_common import AsyncBookingFinisher, pending_record, send_or_fail
from chalicelib.strategies.seat_mirror import refusal

log = logging.getLogger(__name__)


class RedisAsyncStrategy(AsyncBookingFinisher):
    name = "redis_async"

    def __init__(
        self,
        seat_store: SeatStore,
        seat_state: SeatStateService,
        bookings: BookingStore,
        queue: BookingQueue,
    ) -> None:
        super().__init__(seat_store, bookings)
        self._seat_state = seat_state
        self._queue = queue

    # request path ---------------------------------------------------------------------------------------
    def book(self, request: BookingRequest) -> Booking:
        request = self._take(request)
        self._journal(request)
        message = {"body": BookingRequested.of(request).to_json()}
        return send_or_fail(
            self._bookings, self._seats, request, lambda: self._queue.publish(message), "booking queue"
        )

    def resend(self, booking: Booking, performance: Performance) -> None:
        """Send a journaled PENDING booking's message again (a retry found it unsent: the consumer is
        idempotent, so a second copy changes nothing)."""
        self._queue.publish({"body": BookingRequested.of(booking).to_json()})

    def _take(self, request: BookingRequest) -> BookingRequest:
        """The take (reserve_seats.lua) -> the request with its seats (the best available: chosen there)."""
        record = pending_record(request)
        best = request.best_available
        outcome = self._seats.reserve(record, best)
        if outcome.result is ReserveResult.NOT_LOADED and request.performance is not None:
            self._seat_state.publish(request.performance)
            outcome = self._seats.reserve(record, best)
        if outcome.result is ReserveResult.UNAVAILABLE and best is not None and not outcome.seat_ids:
            raise SeatUnavailable([], f"section {best.section.section_id} has no {best.count} seats free")
        if outcome.result is ReserveResult.UNAVAILABLE:
            raise refusal(self._seats, request.performance_id, outcome.states)
        if outcome.result is ReserveResult.UNKNOWN_SEATS:
            raise NotFound(f"seat(s) {list(outcome.seat_ids)} not found in this performance")
        if outcome.result is ReserveResult.NOT_LOADED:
            raise ServiceUnavailable("seat state is not available")
        if best is not None and outcome.result is ReserveResult.RESERVED:
            return dataclasses.replace(request, seat_ids=outcome.seat_ids)
        return request

    def _journal(self, request: BookingRequest) -> None:
        """The hold in MySQL (PENDING, seats active): from its commit on, the seats are this booking's."""
        try:
            self._bookings.insert(
                Booking.from_request(request, BookingStatus.PENDING), request.idempotency_key
            )
        except SeatAlreadyBooked:
            self._give_back(request)
            raise self._refused_by_guard(request) from None
        except CommitUncertain:
            # MySQL may have the hold: the Redis one stays until MySQL can tell (the reconcile job judges it).
            raise
        except (IdempotencyKeyTaken, ServiceUnavailable, UserLimit):
            self._give_back(request)
            raise
        # BookingExists passes through untouched: only the same user's same Idempotency-Key in the same
        # millisecond makes the same booking id (services/booking.py), and that twin request holds the seats.

    def _give_back(self, request: BookingRequest) -> None:
        """Undo the take of a request that was not journaled: its seats, and its record (no such booking)."""
        try:
            self._seats.release(request.booking_id, request.performance_id, request.seat_ids)
            self._seats.delete_record(request.booking_id, request.performance_id)
        except ServiceUnavailable as exc:  # the reconcile job frees a hold MySQL never heard of
            log.warning("booking %s: take not given back: %s", request.booking_id, exc)

    def _refused_by_guard(self, request: BookingRequest) -> SeatUnavailable:
        """Redis showed the seats free but MySQL holds one for another booking: the map had lost that hold.
        Put the real holders back on the map (only where it still shows the seat free) and refuse."""
        holders = self._bookings.holders_of(request.seat_ids)
        try:
            self._seats.repair_holders(
                request.performance_id, [(seat, None, holder) for seat, holder in holders.items()]
            )
        except ServiceUnavailable as exc:
            log.warning("performance %s: lost holds not put back: %s", request.performance_id, exc)
        log.warning("booking %s: the seat map had lost the holds of %s", request.booking_id, sorted(holders))
        taken = {seat: booking for seat, (booking, _) in holders.items()}
        return SeatUnavailable(list(taken) or list(request.seat_ids), holders=taken)

    # consumer path ---------------------------------------------------------------------------------------
    def finish(self, message: BookingRequested) -> BookingStatus:
        settled = self._bookings.settle(message.booking_id, BookingStatus.CONFIRMED)
        return self._finished(settled.booking, message)
