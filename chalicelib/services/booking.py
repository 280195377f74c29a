"""Booking use cases: book, read, cancel. Validation, idempotency and error mapping happen here once for all
five strategies; the strategy only decides whether the seats can be had."""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from chalicelib.domain.booking_ids import made_with_key, mint
from chalicelib.domain.errors import (
    AdmissionRequired,
    BookingExists,
    CacheUnavailable,
    ExtensionLimit,
    HoldExpired,
    IdempotencyKeyReused,
    IdempotencyKeyTaken,
    InvalidRequest,
    NotCancellable,
    NotConfirmable,
    NotExtendable,
    NotFound,
    SeatUnavailable,
    ServiceUnavailable,
)
from chalicelib.domain.holds import HoldChange, HoldOutcome
from chalicelib.domain.messages import MAX_BOOKING_ID_LENGTH
from chalicelib.domain.models import (
    BestAvailable,
    Booking,
    BookingRequest,
    BookingStatus,
    Performance,
    Section,
    epoch_of_rfc3339,
)
from chalicelib.domain.validation import (
    BookingBody,
    parse_booking_body,
    parse_confirm_body,
    parse_idempotency_key,
)
from chalicelib.services.catalogue import CatalogueService
from chalicelib.services.metrics import BookingMetric, Metrics
from chalicelib.services.ports import (
    AdmissionCheck,
    BookingStore,
    BookingStrategy,
    IdempotentRunner,
    RememberedBookings,
)
from chalicelib.services.recently_taken import RecentlyTaken

SEAT_UNAVAILABLE = "seat_unavailable"


@dataclass(frozen=True)
class HoldPolicy:
    """How long a hold keeps its seats (HOLD_SECONDS) and how often it may be extended."""

    hold_seconds: float = 600.0
    max_extensions: int = 2


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
        holds: HoldPolicy = HoldPolicy(),
        clock: Callable[[], float] = time.time,
        admissions: AdmissionCheck | None = None,
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
        self._holds = holds
        self.clock = clock
        self._admissions = admissions

    # book -----------------------------------------------------------------------------------------------
    def book(
        self,
        performance_id: int,
        body: object,
        idempotency_key: str | None,
        caller: str | None = None,
        admission: str | None = None,
    ) -> Booking:
        """-> the booking (CONFIRMED or PENDING) made as `caller`, the signed-in user (None: as the body's
        user_id, for callers that have no identity to give, such as the tests). A performance with a waiting
        room needs `admission`, the user's admission token to it. Raises the contract's errors; a 4xx
        changes nothing.

        An Idempotency-Key is the user's own: two users may send the same one. The first answer is replayed
        from the idempotency record (Redis, IDEMPOTENCY_TTL_SECONDS); once that is gone (expired, or lost
        with Redis), MySQL still holds the key with the booking, and a retry is answered with that booking
        (as it is now) instead of booking again."""
        key = parse_idempotency_key(idempotency_key)
        performance = self._catalogue.performance(performance_id)
        wanted = parse_booking_body(body, self._max_seats, caller)
        self._check_admission(performance, wanted.user_id, admission)
        self._check_seats_belong(performance, wanted.seat_ids)
        if wanted.section_id is not None:
            _section(performance, wanted.section_id)  # 404 before anything is touched
        try:
            return self._book_idempotently(performance, wanted, key)
        except ServiceUnavailable:
            self._metrics.count(BookingMetric.SERVICE_UNAVAILABLE, performance.strategy)
            raise

    def _book_idempotently(self, performance: Performance, wanted: BookingBody, key: str | None) -> Booking:
        if key is None:
            return self._book(performance, wanted, None)
        fingerprint: dict[str, object] = {
            "performance_id": performance.performance_id,
            "user_id": wanted.user_id,
            "seat_ids": list(wanted.seat_ids),
        }
        # Only when asked: a purchase of named seats has the fingerprint it always had.
        if wanted.hold:
            fingerprint["hold"] = True
        if wanted.section_id is not None:
            fingerprint["best_available"] = [wanted.section_id, wanted.count]
        outcome = self._idempotency.run_once(
            "book",
            per_user(wanted.user_id, key),
            fingerprint,
            lambda: self._book_outcome(performance, wanted, key),
        )
        if SEAT_UNAVAILABLE in outcome:
            raise SeatUnavailable(outcome[SEAT_UNAVAILABLE])
        return _booking_from_dict(outcome).as_of(self.clock())

    def _book_outcome(self, performance: Performance, wanted: BookingBody, key: str) -> dict:
        # A taken seat is an answer, not a failure: it is remembered and replayed for the same key.
        try:
            return self._book(performance, wanted, key).to_dict()
        except SeatUnavailable as exc:
            return {SEAT_UNAVAILABLE: exc.seat_ids}

    def _book(self, performance: Performance, wanted: BookingBody, key: str | None) -> Booking:
        user_id = wanted.user_id
        request = BookingRequest(
            # Minted when a step first needs it: a request refused before that (from the seat map) mints none.
            booking_id=lambda: mint(performance.performance_id, user_id, key),
            performance_id=performance.performance_id,
            user_id=user_id,
            seat_ids=wanted.seat_ids,
            strategy=performance.strategy,
            performance=performance,
            idempotency_key=key,
            expires_at=self.clock() + self._holds.hold_seconds if wanted.hold else None,
            best_available=(
                BestAvailable(_section(performance, wanted.section_id), wanted.count or 0)
                if wanted.section_id is not None
                else None
            ),
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
            # Never remembered past a refusing hold's deadline: its seats are free from then on.
            for_at_most = None if exc.lapses_at is None else exc.lapses_at - self.clock()
            self._recently_taken.remember(request.performance_id, exc.seat_ids, exc.holders, for_at_most)
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
        asked = (request.performance_id, _what_was_asked(request), request.expires_at is not None)
        if (first.performance_id, _what_was_asked(first), first.expires_at is not None) != asked:
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
    def get(self, booking_id: str, owner: str | None = None) -> Booking:
        """The booking; with `owner` (the signed-in user), 404 unless it is theirs: no hint that it exists."""
        _check_booking_id(booking_id)
        try:
            booking = self._bookings.get(booking_id)
        except ServiceUnavailable:
            # MySQL is down: a booking Redis still remembers can be answered from there.
            booking = self._from_redis(booking_id)
            if booking is None:
                raise
        if booking is None:  # MySQL has every accepted booking: one it does not know was never accepted
            raise NotFound(f"booking {booking_id} not found")
        if owner is not None:
            _check_owner(booking, owner)
        return booking.as_of(self.clock())

    def _from_redis(self, booking_id: str) -> Booking | None:
        return self._remembered.read_booking(booking_id)

    # cancel ---------------------------------------------------------------------------------------------
    def cancel(
        self, booking_id: str, user_id: str, idempotency_key: str | None = None, admission: str | None = None
    ) -> Booking:
        """`user_id` (the signed-in user) cancels their booking; anyone else's is 404 NOT_FOUND."""
        key = parse_idempotency_key(idempotency_key)
        self._owned(booking_id, user_id, admission)
        if key is None:
            return self._cancel(booking_id)
        fingerprint = {"booking_id": booking_id, "user_id": user_id}
        return _booking_from_dict(
            self._idempotency.run_once(
                "cancel", per_user(user_id, key), fingerprint, lambda: self._cancel(booking_id).to_dict()
            )
        )

    def _cancel(self, booking_id: str) -> Booking:
        """The owner's booking (checked by `_owned`) cancelled: MySQL first (every accepted booking is there:
        a PENDING one too), then the strategy gives the seats back wherever it keeps them besides; a consumer
        that comes later finds the booking CANCELLED."""
        before, after = self._bookings.cancel(booking_id)
        if after is None:
            status = before.status.value if before else "unknown"
            raise NotCancellable(f"booking {booking_id} is {status} and cannot be cancelled")
        self._strategy(after.strategy).release(after)
        self._recently_taken.forget(after.performance_id, after.seat_ids)
        return after

    # holds ------------------------------------------------------------------------------------------------
    def confirm(self, booking_id: str, user_id: str, body: object, admission: str | None = None) -> Booking:
        """A HELD booking -> CONFIRMED with the payment reference. The same confirm again answers the same;
        after `expires_at` 409 HOLD_EXPIRED; a booking that is not HELD 409 NOT_CONFIRMABLE."""
        payment_reference = parse_confirm_body(body)
        self._owned(booking_id, user_id, admission)
        change = self._bookings.confirm_hold(booking_id, payment_reference)
        booking = self._after_hold_change(change, booking_id)
        if change.outcome not in (HoldOutcome.CHANGED, HoldOutcome.UNCHANGED):
            raise NotConfirmable(
                f"booking {booking_id} is {booking.status.value} and cannot be confirmed",
                status=booking.status.value,
            )
        if change.outcome == HoldOutcome.CHANGED:
            self._strategy(booking.strategy).release(booking)  # mirrors it: its seats booked in Redis
            self._metrics.count(BookingMetric.CONFIRMED, booking.strategy)
        return booking

    def extend(self, booking_id: str, user_id: str, admission: str | None = None) -> Booking:
        """A HELD booking's `expires_at` -> now + HOLD_SECONDS, at most HOLD_MAX_EXTENSIONS times."""
        self._owned(booking_id, user_id, admission)
        change = self._bookings.extend_hold(booking_id, self._holds.hold_seconds, self._holds.max_extensions)
        booking = self._after_hold_change(change, booking_id)
        if change.outcome == HoldOutcome.AT_LIMIT:
            raise ExtensionLimit(
                f"booking {booking_id} was extended {booking.extensions} times, the most allowed",
                max_extensions=self._holds.max_extensions,
            )
        if change.outcome != HoldOutcome.CHANGED:
            raise NotExtendable(
                f"booking {booking_id} is {booking.status.value} and cannot be extended",
                status=booking.status.value,
            )
        self._strategy(booking.strategy).release(booking)  # mirrors it: the new deadline in Redis
        return booking

    def _owned(self, booking_id: str, user_id: str, admission: str | None) -> Booking:
        """The user's own booking (404 for anyone else's), once they are admitted to its performance."""
        _check_booking_id(booking_id)
        stored = self._bookings.get(booking_id)
        if stored is None:
            raise NotFound(f"booking {booking_id} not found")
        _check_owner(stored, user_id)
        self._check_admission(self._catalogue.performance(stored.performance_id), user_id, admission)
        return stored

    def _check_admission(self, performance: Performance, user_id: str, admission: str | None) -> None:
        """A performance with a waiting room takes booking writes only from users it has admitted (403
        ADMISSION_REQUIRED otherwise)."""
        if not performance.admit_per_second:
            return
        if self._admissions is None:
            raise AdmissionRequired(
                f"performance {performance.performance_id} has a waiting room and this deployment admits "
                "nobody",
                performance_id=performance.performance_id,
            )
        self._admissions.check_admission(admission, user_id, performance.performance_id)

    def _after_hold_change(self, change: HoldChange, booking_id: str) -> Booking:
        """The booking after a confirm or an extension; a hold found lapsed is given back and answered
        409 HOLD_EXPIRED."""
        booking = change.booking
        if booking is None:
            raise NotFound(f"booking {booking_id} not found")
        if change.expired:
            self.expired(booking)
        if change.outcome == HoldOutcome.LAPSED:
            raise HoldExpired(
                f"the hold of booking {booking_id} expired at {_rfc(booking)}", expires_at=_rfc(booking)
            )
        return booking

    def expired(self, booking: Booking) -> None:
        """A hold MySQL has just written EXPIRED: its seats go back wherever the strategy keeps them."""
        self._strategy(booking.strategy).release(booking)
        self._recently_taken.forget(booking.performance_id, booking.seat_ids)

    def sweep_lapsed_holds(self, limit: int = 1_000) -> int:
        """The sweeper: every hold whose time has run out -> EXPIRED in MySQL, its seats given back (the seat
        map shows them AVAILABLE from here on) -> how many. Correctness never waits for it: every take treats
        a lapsed hold as free already."""
        expired = 0
        for lapsed in self._bookings.lapsed_holds(limit):
            settled = self._bookings.expire(lapsed.booking_id)
            if settled.changed and settled.booking is not None:
                self.expired(settled.booking)
                expired += 1
        return expired


def _check_booking_id(booking_id: str) -> None:
    if (
        not 0 < len(booking_id) <= MAX_BOOKING_ID_LENGTH
        or not booking_id.isalnum()
        or not booking_id.isascii()
    ):
        raise NotFound(f"booking {booking_id[:MAX_BOOKING_ID_LENGTH]!r} not found")


def _check_owner(booking: Booking, user_id: str) -> None:
    """Another user's booking is answered as one that does not exist (the same words): a booking id is
    no hint, let alone a key, to anyone but its owner."""
    if booking.user_id != user_id:
        raise NotFound(f"booking {booking.booking_id} not found")


def _section(performance: Performance, section_id: int) -> Section:
    section = performance.section(section_id)
    if section is None:
        raise NotFound(f"section {section_id} not found in this performance", field="section_id")
    return section


def _what_was_asked(request: BookingRequest | Booking) -> object:
    """Named seats, or (section, count) for the best available (whatever seats were chosen)."""
    if isinstance(request, BookingRequest):
        return request.best_available.as_pair if request.best_available else request.seat_ids
    return request.wanted or request.seat_ids


def _rfc(booking: Booking) -> str | None:
    return booking.to_dict().get("expires_at")


def _booking_from_dict(data: dict) -> Booking:
    return Booking(
        booking_id=data["booking_id"],
        performance_id=data["performance_id"],
        user_id=data["user_id"],
        seat_ids=tuple(data["seat_ids"]),
        status=BookingStatus(data["status"]),
        strategy=data["strategy"],
        reason=data.get("reason"),
        expires_at=epoch_of_rfc3339(data["expires_at"]) if data.get("expires_at") else None,
        extensions=data.get("extensions", 0),
        payment_reference=data.get("payment_reference"),
    )
