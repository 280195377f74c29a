"""`fifo_partition`: no locks at all — requests for a section wait in line, and one consumer at a time
decides them in order (the SQS twin of Kafka partitioning).

Request path:  a seat the map already shows taken -> 409 at once; otherwise the booking is journaled in
               MySQL (PENDING, waiting in line, no seats held) and the request goes to an SQS FIFO queue
               with MessageGroupId = the section and MessageDeduplicationId = the booking id -> 202 PENDING.
               A 202 here is a place in line, not a promise of the seats.
Consumer path: SQS hands out one in-flight batch per group, in order. For each request: are the seats free
               in MySQL? PENDING -> CONFIRMED (seats active) : REJECTED, under the booking row's lock. No
               lock on seats, no Redis lock: within a group the order itself excludes races.

Multi-section bookings: the group is the section of the booking's lowest seat. Two bookings that share a
seat but start in different sections are then in different groups and may be decided at the same moment; the
unique guard on booking_seats lets exactly one of them in and the other becomes REJECTED. Order is kept
strictly per section; correctness holds across sections.
"""

from __future__ import annotations

from chalicelib.domain.messages import BookingRequested
from chalicelib.domain.models import Booking, BookingRequest, BookingStatus, Performance
from chalicelib.services.ports import BookingQueue, BookingStore, SeatStore
from chalicelib.services.seat_state import SeatStateService
from chalicelib.strategies.async_common import (
    AsyncBookingFinisher,
    journal_in_line,
    refuse_seats_shown_taken,
    send_or_fail,
)
from chalicelib.strategies.partitioning import section_partition


class FifoPartitionStrategy(AsyncBookingFinisher):
    name = "fifo_partition"

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
        refuse_seats_shown_taken(self._seats, self._seat_state, request)
        journal_in_line(self._bookings, self._seats, request)
        message = self._message(BookingRequested.of(request), request.performance)
        return send_or_fail(
            self._bookings, self._seats, request, lambda: self._queue.publish(message), "booking queue"
        )

    def resend(self, booking: Booking, performance: Performance) -> None:
        """Put a journaled PENDING booking in line again (a retry found it unsent; a second copy is decided
        once: the first to reach the consumer decides, the other finds it final)."""
        self._queue.publish(self._message(BookingRequested.of(booking, performance), performance))

    @staticmethod
    def _message(request: BookingRequested, performance: Performance | None) -> dict:
        return {
            "body": request.to_json(),
            "group_id": section_partition(
                performance, request.performance_id, request.seat_ids, request.wanted
            ),
            "deduplication_id": request.booking_id,
        }

    # consumer path (one group at a time, in order) --------------------------------------------------------
    def finish(self, message: BookingRequested) -> BookingStatus:
        return self._finished(self._bookings.decide_in_line(message.booking_id).booking, message)
