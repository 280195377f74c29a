"""Booking use cases: book, read, cancel. Validation, idempotency and error mapping happen here once for all
five strategies; the strategy only decides whether the seats can be had."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping

from chalicelib.domain.booking_ids import made_with_key, mint
from chalicelib.domain.errors import (
    BookingExists,
    CacheUnavailable,
    Forbidden,
    IdempotencyKeyReused,
    IdempotencyKeyTaken,
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
from chalicelib.services.metrics import BookingMetric, Metrics
from chalicelib.services.ports import BookingStore, BookingStrategy, IdempotentRunner, RememberedBookings
from chalicelib.services.recently_taken import RecentlyTaken

SEAT_UNAVAILABLE = "seat_unavailable"


def per_user(user_id: str, idempotency_key: str) -> str:
    """The idempotency record's key: Idempotency-Keys are the user's own (two users may send the same one)."""
    return json.dumps([user_id, idempotency_key])


class BookingService:
    def __init__(
        self,
        catalogue: CatalogueService,
        strategies: Mapping[str, BookingStrategy],
        bookings: BookingStore,
        remembered: RememberedBookings,
        idempotency: IdempotentRunner,
        max_seats_per_booking: int,
        metrics: Metrics,
        redis_down_fallback: BookingStrategy | None = None,
        recently_taken: RecentlyTaken | None = None,
    ) -> None:
        self._catalogue = catalogue
        self._strategies = strategies
        self._bookings = bookings
        self._remembered = remembered
        self._idempotency = idempotency
        self._max_seats = max_seats_per_booking
        self._metrics = metrics
        self._fallback = redis_down_fallback
        self._recently_taken = recently_taken or RecentlyTaken(0)

    # book -----------------------------------------------------------------------------------------------
    def book(self, performance_id: int, body: object, idempotency_key: str | None) -> Booking:
        """-> the booking (CONFIRMED or PENDING). Raises the contract's errors; a 4xx changes nothing.

        An Idempotency-Key is the user's own: two users may send the same one. The first answer is replayed
        from the idempotency record (Redis, IDEMPOTENCY_TTL_SECONDS); once that is gone (expired, or lost
        with Redis), MySQL still holds the key with the booking, and a retry is answered with that booking
        (as it is now) instead of booking again."""
        key = parse_idempotency_key(idempotency_key)
        performance = self._catalogue.performance(performance_id)
        user_id, seat_ids = parse_booking_body(body, self._max_seats)
        self._check_seats_belong(performance, seat_ids)
        try:
            return self._book_idempotently(performance, user_id, seat_ids, key)
        except ServiceUnavailable:
            self._metrics.count(BookingMetric.SERVICE_UNAVAILABLE, performance.strategy)
            raise

    def _book_idempotently(
        self, performance: Performance, user_id: str, seat_ids: tuple[int, ...], key: str | None
    ) -> Booking:
        if key is None:
            return self._book(performance, user_id, seat_ids, None)
        fingerprint = {
            "performance_id": performance.performance_id,
            "user_id": user_id,
            "seat_ids": list(seat_ids),
        }
        outcome = self._idempotency.run_once(
            "book",
            per_user(user_id, key),
            fingerprint,
            lambda: self._book_outcome(performance, user_id, seat_ids, key),
        )
        if SEAT_UNAVAILABLE in outcome:
            raise SeatUnavailable(outcome[SEAT_UNAVAILABLE])
        return _booking_from_dict(outcome)

    def _book_outcome(
        self, performance: Performance, user_id: str, seat_ids: tuple[int, ...], key: str
    ) -> dict:
        # A taken seat is an answer, not a failure: it is remembered and replayed for the same key.
        try:
            return self._book(performance, user_id, seat_ids, key).to_dict()
        except SeatUnavailable as exc:
            return {SEAT_UNAVAILABLE: exc.seat_ids}

    def _book(
        self, performance: Performance, user_id: str, seat_ids: tuple[int, ...], key: str | None
    ) -> Booking:
        request = BookingRequest(
            # Minted when a step first needs it: a request refused before that (from the seat map) mints none.
            booking_id=lambda: mint(performance.performance_id, user_id, key),
            performance_id=performance.performance_id,
            user_id=user_id,
            seat_ids=seat_ids,
            strategy=performance.strategy,
            performance=performance,
            idempotency_key=key,
        )
        try:
            booking = self._decide(request)
        except IdempotencyKeyTaken as exc:
            return self._replay(self._stored(exc.booking_id), request)
        except BookingExists:  # the same user's same key in the same millisecond: one booking answers both
            return self._replay(self._stored(request.booking_id), request)
        except SeatUnavailable as exc:
            first = self._first_attempt_among(exc.holders, request)
            if first is None:
                self._metrics.count(BookingMetric.REFUSED, request.strategy)
                raise
            return self._replay(first, request)
        # Counted once, here, where the booking is made: a replayed answer is no new booking.
        self._metrics.count(BookingMetric.ACCEPTED, booking.strategy)
        if booking.status is BookingStatus.CONFIRMED:  # a synchronous strategy: final at once
            self._metrics.count(BookingMetric.CONFIRMED, booking.strategy)
        return booking

    def _decide(self, request: BookingRequest) -> Booking:
        """The strategy's decision; a seat this process was told a moment ago is taken is refused from memory
        (services/recently_taken.py): in a rush, nearly every request, answered without a round trip."""
        taken = self._recently_taken.taken_among(request.performance_id, request.seat_ids)
        if taken:
            holders = {seat: booking for seat, booking in taken.items() if booking is not None}
            raise SeatUnavailable(list(taken), holders=holders)
        try:
            return self._decide_with_the_strategy(request)
        except SeatUnavailable as exc:
            self._recently_taken.remember(request.performance_id, exc.seat_ids, exc.holders)
            raise

    def _decide_with_the_strategy(self, request: BookingRequest) -> Booking:
        try:
            return self._strategy(request.strategy).book(request)
        except CacheUnavailable:
            if self._fallback is None:
                raise
        # Redis is down and the deployment chose to go on: MySQL decides (row locks), and the unique guard
        # keeps seats single-sold against holds journaled before Redis went away.
        return self._fallback.book(dataclasses.replace(request, strategy=self._fallback.name))

    def _first_attempt_among(self, holders: Mapping[int, str], request: BookingRequest) -> Booking | None:
        """The booking holding a refused seat that this user's first attempt with this key made, if any: a
        retry whose idempotency record is gone must get that booking back, not a 409 for its own seats. The
        booking id says so (domain/booking_ids.py); MySQL, which keeps the key with the booking, confirms
        it."""
        key = request.idempotency_key
        if key is None:
            return None
        for booking_id in holders.values():
            if made_with_key(booking_id, request.user_id, key):
                first = self._bookings.get(booking_id)
                if first is not None and first.user_id == request.user_id:
                    return first
        return None

    def _stored(self, booking_id: str) -> Booking:
        booking = self._bookings.get(booking_id)
        if booking is None:  # it was there a moment ago (bookings are never deleted): MySQL is struggling
            raise ServiceUnavailable("the booking of this Idempotency-Key could not be read; try again")
        return booking

    def _replay(self, first: Booking, request: BookingRequest) -> Booking:
        """The user's earlier booking with this key, as MySQL has it now; 422 if the key came with another
        request. One still PENDING is sent on again: its first send may never have left (the consumer,
        settling by compare-and-set, decides it once however many copies arrive)."""
        if (first.performance_id, first.seat_ids) != (request.performance_id, request.seat_ids):
            raise IdempotencyKeyReused(
                "this Idempotency-Key was used with a different request body", field="Idempotency-Key"
            )
        resend = getattr(self._strategies.get(first.strategy), "resend", None)  # asynchronous ones only
        if first.status is BookingStatus.PENDING and resend is not None and request.performance is not None:
            resend(first, request.performance)
        return first

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
        if booking is None:  # MySQL has every accepted booking: one it does not know was never accepted
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
                "cancel",
                per_user(user_id, key),
                fingerprint,
                lambda: self._cancel(booking_id, user_id).to_dict(),
            )
        )

    def _cancel(self, booking_id: str, user_id: str) -> Booking:
        """MySQL first (every accepted booking is there: a PENDING one too), then the strategy gives the seats
        back wherever it keeps them besides; a consumer that comes later finds the booking CANCELLED."""
        stored = self._bookings.get(booking_id)
        if stored is None:
            raise NotFound(f"booking {booking_id} not found")
        _check_owner(stored, user_id)
        before, after = self._bookings.cancel(booking_id)
        if after is None:
            status = before.status.value if before else "unknown"
            raise NotCancellable(f"booking {booking_id} is {status} and cannot be cancelled")
        self._strategy(after.strategy).release(after)
        self._recently_taken.forget(after.performance_id, after.seat_ids)
        return after


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
