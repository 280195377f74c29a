"""Domain errors. Each maps to exactly one HTTP status and error code of the contract (docs/api.md)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any


class BookingError(Exception):
    status = 500
    code = "INTERNAL_ERROR"

    def __init__(self, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.message = message
        self.extra = extra

    @property
    def headers(self) -> dict[str, str]:
        """HTTP headers the answer carries besides its body."""
        return {}


class InvalidRequest(BookingError):
    status = 400
    code = "INVALID_REQUEST"


class PayloadTooLarge(BookingError):
    status = 413
    code = "PAYLOAD_TOO_LARGE"


class Unauthorized(BookingError):
    status = 401
    code = "UNAUTHORIZED"


class Forbidden(BookingError):
    status = 403
    code = "FORBIDDEN"


class AdmissionRequired(BookingError):
    """A booking write on a performance with a waiting room, without this user's admission token to it."""

    status = 403
    code = "ADMISSION_REQUIRED"


class NotFound(BookingError):
    status = 404
    code = "NOT_FOUND"


class RateLimited(BookingError):
    """A user or a client address spent its bucket of booking writes; `retry_after` says when one is back."""

    status = 429
    code = "RATE_LIMITED"

    def __init__(self, message: str, retry_after: float, limit: str) -> None:
        super().__init__(message, retry_after_seconds=retry_after, limit=limit)
        self.retry_after = retry_after

    @property
    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(max(1, math.ceil(self.retry_after)))}  # whole seconds (RFC 9110)


class SeatUnavailable(BookingError):
    status = 409
    code = "SEAT_UNAVAILABLE"

    def __init__(
        self,
        seat_ids: list[int],
        message: str = "",
        holders: Mapping[int, str] | None = None,
        lapses_at: float | None = None,
    ) -> None:
        seats = sorted(seat_ids)
        super().__init__(message or f"seat(s) {seats} already taken", seat_ids=seats)
        self.seat_ids = seats
        # seat -> booking id holding it, where the refusing store knew (never shown to clients): lets the
        # service recognise a retry whose first attempt holds the seats (services/booking.py).
        self.holders = dict(holders or {})
        # The earliest deadline (epoch seconds) of a hold among the holders, where known: the refusal is
        # not remembered past it (services/recently_taken.py), since the seat is free from then on.
        self.lapses_at = lapses_at


class VersionGone(BookingError):
    """A seat-map delta asked from a version the change log no longer reaches: read the whole map again."""

    status = 410
    code = "VERSION_GONE"


class TicketLapsed(BookingError):
    """A waiting room's ticket whose turn came and went uncollected: its user may join again."""

    status = 410
    code = "TICKET_LAPSED"


class NotCancellable(BookingError):
    status = 409
    code = "NOT_CANCELLABLE"


class UserLimit(BookingError):
    """The user's seats of this performance (PENDING, HELD, CONFIRMED) would pass MAX_SEATS_PER_USER."""

    status = 409
    code = "USER_LIMIT"
    reason = "USER_LIMIT"  # what an in-line booking refused for it reads as its reason

    def __init__(self, remaining: int, limit: int) -> None:
        super().__init__(
            f"at most {limit} seats of a performance per user: {remaining} left for this user",
            remaining=remaining,
            max_seats_per_user=limit,
        )
        self.remaining = remaining


class HoldExpired(BookingError):
    """The hold's time ran out before this confirm or extension: it is EXPIRED, its seats free."""

    status = 409
    code = "HOLD_EXPIRED"


class NotConfirmable(BookingError):
    status = 409
    code = "NOT_CONFIRMABLE"


class NotExtendable(BookingError):
    status = 409
    code = "NOT_EXTENDABLE"


class ExtensionLimit(BookingError):
    status = 409
    code = "EXTENSION_LIMIT"


class IdempotencyInProgress(BookingError):
    status = 409
    code = "IDEMPOTENCY_IN_PROGRESS"


class IdempotencyKeyReused(BookingError):
    status = 422
    code = "IDEMPOTENCY_KEY_REUSED"


class ServiceUnavailable(BookingError):
    status = 503
    code = "SERVICE_UNAVAILABLE"


class CacheUnavailable(ServiceUnavailable):
    """Redis (seat state, leases, idempotency records) cannot be reached, or its circuit is open."""


class CommitUncertain(ServiceUnavailable):
    """The connection failed while MySQL was committing: the transaction may or may not have committed.
    `thread_id` is the server's id of that connection, so it can be killed before the outcome is read."""

    def __init__(self, thread_id: int | None) -> None:
        super().__init__("database unavailable; the outcome of the last write is not known yet")
        self.thread_id = thread_id


class BookingExists(Exception):
    """A booking with this id is already stored (a redelivery, or a cancel that came first)."""


class IdempotencyKeyTaken(Exception):
    """The user already has a booking made with this Idempotency-Key (MySQL's per-user unique key)."""

    def __init__(self, booking_id: str) -> None:
        super().__init__(f"the key was used by booking {booking_id}")
        self.booking_id = booking_id


class SeatAlreadyBooked(Exception):
    """The database guard refused: a seat is already held by another active booking."""


class SeatsLocked(Exception):
    """Another transaction is booking these seats right now (a row lock was refused)."""

    def __init__(self, seat_ids: list[int]) -> None:
        super().__init__(f"seats {seat_ids} are being booked by someone else")
        self.seat_ids = seat_ids
