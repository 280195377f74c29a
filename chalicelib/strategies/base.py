"""The one seam every concurrency strategy plugs into (docs/architecture.md)."""

from __future__ import annotations

from typing import Protocol

from chalicelib.domain.messages import BookingRequested
from chalicelib.domain.models import Booking, BookingRequest, BookingStatus, Performance


class BookingStrategy(Protocol):
    """May this user have these seats of this performance?

    `book` answers CONFIRMED (synchronous strategies) or PENDING (asynchronous ones), or raises
    SeatUnavailable / ServiceUnavailable. The service layer has already validated the request, resolved the
    performance and applied idempotency; a strategy never parses HTTP or formats a response.
    """

    name: str

    def book(self, request: BookingRequest) -> Booking: ...

    def release(self, booking: Booking) -> None:
        """Give a cancelled booking's seats back in whatever state the strategy keeps besides MySQL."""
        ...


class AsyncBookingStrategy(BookingStrategy, Protocol):
    """A strategy that answers PENDING and finishes the booking in a consumer."""

    def finish(self, message: BookingRequested) -> BookingStatus:
        """Make the booking final (idempotent: a redelivered message changes nothing)."""
        ...

    def give_up(self, booking_id: str, reason: str, message: BookingRequested | None) -> BookingStatus | None:
        """No delivery can ever succeed: mark the booking FAILED and give its seats back (idempotent)."""
        ...

    def resend(self, booking: Booking, performance: Performance) -> None:
        """Send a journaled PENDING booking on again (its first send may never have happened)."""
        ...
