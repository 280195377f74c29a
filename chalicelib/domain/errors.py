"""Domain errors. Each maps to exactly one HTTP status and error code of the contract (../shared/API.md)."""

from __future__ import annotations

from typing import Any


class BookingError(Exception):
    status = 500
    code = "INTERNAL_ERROR"

    def __init__(self, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.message = message
        self.extra = extra


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


class NotFound(BookingError):
    status = 404
    code = "NOT_FOUND"


class SeatUnavailable(BookingError):
    status = 409
    code = "SEAT_UNAVAILABLE"

    def __init__(self, seat_ids: list[int], message: str = "") -> None:
        seats = sorted(seat_ids)
        super().__init__(message or f"seat(s) {seats} already taken", seat_ids=seats)
        self.seat_ids = seats


class NotCancellable(BookingError):
    status = 409
    code = "NOT_CANCELLABLE"


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


class BookingExists(Exception):
    """A booking with this id is already stored (a redelivery, or a cancel that came first)."""


class SeatAlreadyBooked(Exception):
    """The database guard refused: a seat is already held by another active booking."""


class SeatsLocked(Exception):
    """Another transaction is booking these seats right now (a row lock was refused)."""

    def __init__(self, seat_ids: list[int]) -> None:
        super().__init__(f"seats {seat_ids} are being booked by someone else")
        self.seat_ids = seat_ids
