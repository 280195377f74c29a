"""`stream_state`'s request path: journal the booking in line, put its request on the request stream; and
the release a cancel (or a refusal) sends the ledger, behind the booking's request (see __init__)."""

from __future__ import annotations

import logging
from collections.abc import Callable

from chalicelib.domain.messages import BookingRequested, HoldDeadlineChanged, SeatsReleaseRequested
from chalicelib.domain.models import (
    LEDGER_RELEASE_PENDING_ACTION,
    Booking,
    BookingRequest,
    BookingStatus,
    Performance,
    ReconcileEntry,
)
from chalicelib.services.ports import BookingStore, LedgerReleases, RecordStream, SeatStore
from chalicelib.services.seat_state import SeatStateService
from chalicelib.strategies.async_common import journal_in_line, refuse_seats_shown_taken, send_or_fail
from chalicelib.strategies.partitioning import section_partition
from chalicelib.strategies.seat_mirror import mirror

log = logging.getLogger(__name__)

NAME = "stream_state"


class StreamStateStrategy:
    name = NAME

    def __init__(
        self,
        seat_store: SeatStore,
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
        message = BookingRequested.of(request)
        partition = section_partition(
            request.performance, request.performance_id, request.seat_ids, message.wanted
        )
        data = message.to_json()
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
        partition = section_partition(performance, booking.performance_id, booking.seat_ids, booking.wanted)
        self._requests.put(BookingRequested.of(booking, performance).to_json(), partition)

    def release(self, booking: Booking) -> None:
        """Make the map say what MySQL says of the booking; one that holds nothing any more (cancelled,
        expired) has its seats freed in the map now and in the ledger in line."""
        mirror(self._seats, booking)
        if not booking.status.holds_seats:
            release_in_ledger(self, self._bookings, booking)
        elif booking.expires_at is not None and booking.status is not BookingStatus.PENDING:
            self._tell_ledger_the_deadline(booking)

    def _tell_ledger_the_deadline(self, booking: Booking) -> None:
        """A hold extended (HELD, a later deadline) or confirmed (CONFIRMED: none): the ledger frees a hold's
        seats at the deadline it knows, so it hears of the change behind the booking's request. If the put
        fails, the ledger may give the seats away at the old deadline: MySQL's guard then refuses that
        newcomer and tells the ledger who holds them (correct, one wasted decision)."""
        command = HoldDeadlineChanged(
            booking.booking_id,
            booking.performance_id,
            booking.user_id,
            booking.seat_ids,
            booking.expires_at if booking.status is BookingStatus.HELD else None,
        )
        try:
            self._requests.put(
                command.to_json(), self._partition_of(booking.performance_id, booking.seat_ids)
            )
        except Exception as exc:
            log.warning("booking %s: the ledger did not hear of its deadline: %s", booking.booking_id, exc)

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
