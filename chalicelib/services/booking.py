"""Booking use cases: book, read, cancel. Validation, idempotency and error mapping happen here once for all
five strategies; the strategy only decides whether the seats can be had."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from ulid import ULID

from chalicelib.domain.errors import (
    BookingExists,
    CacheUnavailable,
    Forbidden,
    InvalidRequest,
    NotCancellable,
    NotFound,
    SeatUnavailable,
    ServiceUnavailable,
)
from chalicelib.domain.messages import MAX_BOOKING_ID_LENGTH
from chalicelib.domain.models import Booking, BookingRequest, BookingStatus, Performance
from chalicelib.domain.validation import parse_booking_body, parse_idempotency_key
from chalicelib.services.catalogue import CatalogueService
from chalicelib.services.ports import BookingStore, IdempotentRunner, RememberedBookings
from chalicelib.strategies.base import BookingStrategy

SEAT_UNAVAILABLE = "seat_unavailable"


def new_booking_id() -> str:
    # ULIDs sort by creation time: new bookings land at the end of the InnoDB primary key.
    return str(ULID())


class BookingService:
    def __init__(
        self,
        catalogue: CatalogueService,
        strategies: Mapping[str, BookingStrategy],
        bookings: BookingStore,
        remembered: RememberedBookings,
        idempotency: IdempotentRunner,
        max_seats_per_booking: int,
        redis_down_fallback: BookingStrategy | None = None,
    ) -> None:
        self._catalogue = catalogue
        self._strategies = strategies
        self._bookings = bookings
        self._remembered = remembered
        self._idempotency = idempotency
        self._max_seats = max_seats_per_booking
        self._fallback = redis_down_fallback

    # book -----------------------------------------------------------------------------------------------
    def book(self, performance_id: int, body: object, idempotency_key: str | None) -> Booking:
        """-> the booking (CONFIRMED or PENDING). Raises the contract's errors; a 4xx changes nothing."""
        key = parse_idempotency_key(idempotency_key)
        performance = self._catalogue.performance(performance_id)
        user_id, seat_ids = parse_booking_body(body, self._max_seats)
        self._check_seats_belong(performance, seat_ids)
        if key is None:
            return self._book(performance, user_id, seat_ids)
        fingerprint = {"performance_id": performance_id, "user_id": user_id, "seat_ids": list(seat_ids)}
        outcome = self._idempotency.run_once(
            "book", key, fingerprint, lambda: self._book_outcome(performance, user_id, seat_ids)
        )
        if SEAT_UNAVAILABLE in outcome:
            raise SeatUnavailable(outcome[SEAT_UNAVAILABLE])
        return _booking_from_dict(outcome)

    def _book_outcome(self, performance: Performance, user_id: str, seat_ids: tuple[int, ...]) -> dict:
        # A taken seat is an answer, not a failure: it is remembered and replayed for the same key.
        try:
            return self._book(performance, user_id, seat_ids).to_dict()
        except SeatUnavailable as exc:
            return {SEAT_UNAVAILABLE: exc.seat_ids}

    def _book(self, performance: Performance, user_id: str, seat_ids: tuple[int, ...]) -> Booking:
        request = BookingRequest(
            booking_id=new_booking_id(),
            performance_id=performance.performance_id,
            user_id=user_id,
            seat_ids=seat_ids,
            strategy=performance.strategy,
            performance=performance,
        )
        try:
            return self._strategy(performance.strategy).book(request)
        except CacheUnavailable:
            if self._fallback is None:
                raise
        # Redis is down and the deployment chose to go on: MySQL decides (row locks), and the unique guard
        # keeps seats single-sold against holds Redis took before it went away.
        return self._fallback.book(dataclasses.replace(request, strategy=self._fallback.name))

    def _check_seats_belong(self, performance: Performance, seat_ids: tuple[int, ...]) -> None:
        foreign = [seat for seat in seat_ids if performance.section_of(seat) is None]
        if not foreign:
            return
        existing = self._catalogue.existing_seat_ids(foreign)
        unknown = sorted(set(foreign) - existing)
        if unknown:
            raise NotFound(f"seat(s) {unknown} not found", seat_ids=unknown)
        raise InvalidRequest(
            f"seat(s) {sorted(existing)} belong to another performance",
            field="seat_ids",
            seat_ids=sorted(existing),
        )

    def _strategy(self, name: str) -> BookingStrategy:
        strategy = self._strategies.get(name)
        if strategy is None:
            raise ServiceUnavailable(f"strategy {name!r} is not available in this deployment")
        return strategy

    # read -----------------------------------------------------------------------------------------------
    def get(self, booking_id: str) -> Booking:
        _check_booking_id(booking_id)
        try:
            booking = self._bookings.get(booking_id)
        except ServiceUnavailable:
            # MySQL is down: a booking Redis still remembers can be answered from there.
            booking = self._from_redis(booking_id)
            if booking is None:
                raise
            return booking
        booking = booking or self._from_redis(booking_id)
        if booking is None:
            raise NotFound(f"booking {booking_id} not found")
        return booking

    def _from_redis(self, booking_id: str) -> Booking | None:
        return self._remembered.read_booking(booking_id)

    # cancel ---------------------------------------------------------------------------------------------
    def cancel(self, booking_id: str, user_id: str | None, idempotency_key: str | None = None) -> Booking:
        key = parse_idempotency_key(idempotency_key)
        _check_booking_id(booking_id)
        if not user_id:
            raise InvalidRequest("the X-User-Id header is required to cancel a booking", field="X-User-Id")
        if key is None:
            return self._cancel(booking_id, user_id)
        fingerprint = {"booking_id": booking_id, "user_id": user_id}
        return _booking_from_dict(
            self._idempotency.run_once(
                "cancel", key, fingerprint, lambda: self._cancel(booking_id, user_id).to_dict()
            )
        )

    def _cancel(self, booking_id: str, user_id: str) -> Booking:
        stored = self._bookings.get(booking_id)
        if stored is None:
            pending = self._from_redis(booking_id)
            if pending is None:
                raise NotFound(f"booking {booking_id} not found")
            _check_owner(pending, user_id)
            if pending.status.is_final:
                raise NotCancellable(f"booking {booking_id} is {pending.status.value}")
            cancelled = self._cancel_before_persisted(pending)
            if cancelled is not None:
                return cancelled
            stored = self._bookings.get(booking_id)  # the consumer stored it first: cancel it there
            if stored is None:
                raise ServiceUnavailable(f"booking {booking_id} could not be read back")
        _check_owner(stored, user_id)
        before, after = self._bookings.cancel(booking_id)
        if after is None:
            status = before.status.value if before else "unknown"
            raise NotCancellable(f"booking {booking_id} is {status} and cannot be cancelled")
        self._strategy(after.strategy).release(after)
        return after

    def _cancel_before_persisted(self, pending: Booking) -> Booking | None:
        """Claim the booking id in MySQL as CANCELLED before the consumer stores it; None if it was first."""
        cancelled = dataclasses.replace(
            pending, status=BookingStatus.CANCELLED, reason="cancelled by the user before it was confirmed"
        )
        try:
            self._bookings.insert(cancelled)
        except BookingExists:
            return None
        self._strategy(cancelled.strategy).release(cancelled)
        return cancelled


def _check_booking_id(booking_id: str) -> None:
    if (
        not 0 < len(booking_id) <= MAX_BOOKING_ID_LENGTH
        or not booking_id.isalnum()
        or not booking_id.isascii()
    ):
        raise NotFound(f"booking {booking_id[:MAX_BOOKING_ID_LENGTH]!r} not found")


def _check_owner(booking: Booking, user_id: str) -> None:
    if booking.user_id != user_id:
        raise Forbidden("only the user who made a booking may cancel it")


def _booking_from_dict(data: dict) -> Booking:
    return Booking(
        booking_id=data["booking_id"],
        performance_id=data["performance_id"],
        user_id=data["user_id"],
        seat_ids=tuple(data["seat_ids"]),
        status=BookingStatus(data["status"]),
        strategy=data["strategy"],
        reason=data.get("reason"),
    )
