"""`fifo_partition`: no locks at all — requests for a section wait in line, and one consumer at a time
decides them in order (the SQS twin of Kafka partitioning).

Request path:  a seat the map already shows taken -> 409 at once; otherwise the booking's record is kept
               (PENDING, no seats held) and the request goes to an SQS FIFO queue with
               MessageGroupId = the section and MessageDeduplicationId = the booking id -> 202 PENDING.
Consumer path: SQS hands out one in-flight batch per group, in order. For each request: are the seats free
               in MySQL? insert CONFIRMED : REJECTED. No SELECT … FOR UPDATE, no Redis lock: within a
               group the order itself excludes races.

Multi-section bookings: the group is the section of the booking's lowest seat. Two bookings that share a
seat but start in different sections are then in different groups and may be decided at the same moment; the
unique guard on booking_seats lets exactly one of them in and the other becomes REJECTED. Order is kept
strictly per section; correctness holds across sections.
"""

from __future__ import annotations

from chalicelib.adapters.redis_seats import RedisSeatStore
from chalicelib.domain.errors import BookingExists, SeatAlreadyBooked
from chalicelib.domain.messages import BookingRequested
from chalicelib.domain.models import Booking, BookingRequest, BookingStatus
from chalicelib.services.ports import BookingQueue, BookingStore
from chalicelib.services.seat_state import SeatStateService
from chalicelib.strategies.async_common import (
    AsyncBookingFinisher,
    accept_in_line,
    refuse_seats_shown_taken,
)
from chalicelib.strategies.partitioning import section_partition


def message_group(request: BookingRequest) -> str:
    return section_partition(request.performance, request.performance_id, request.seat_ids)


class FifoPartitionStrategy(AsyncBookingFinisher):
    name = "fifo_partition"

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
        refuse_seats_shown_taken(self._seats, self._seat_state, request)
        message = {
            "body": BookingRequested.of(request).to_json(),
            "group_id": message_group(request),
            "deduplication_id": request.booking_id,
        }
        return accept_in_line(self._seats, request, lambda: self._queue.publish(message), "booking queue")

    # consumer path (one group at a time, in order) --------------------------------------------------------
    def finish(self, message: BookingRequested) -> BookingStatus:
        record = self._seats.read_record(message.booking_id)
        if record is not None and record.status is BookingStatus.FAILED:
            return self._store_final(message, BookingStatus.FAILED, record.reason or "gave up earlier")
        try:
            taken = self._bookings.insert_if_seats_free(self._booking(message, BookingStatus.CONFIRMED))
        except BookingExists:
            return self._align_with_database(message.booking_id)  # cancelled first, or a redelivery
        except SeatAlreadyBooked:
            taken = list(message.seat_ids)  # a booking of another group got there in the same instant
        if taken:
            reason = f"seat(s) {taken} were taken earlier in line"
            return self._store_final(message, BookingStatus.REJECTED, reason, repair=False)
        # MySQL has just made this booking the seats' holder: the map says so over anything stale.
        self._seats.confirm(message.booking_id, message.performance_id, message.seat_ids, overwrite=True)
        self._seats.mark_record(message.booking_id, BookingStatus.CONFIRMED)
        return BookingStatus.CONFIRMED
