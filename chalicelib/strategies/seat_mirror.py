"""Keeping the Redis seat map (what GET /performances/{id}/seats shows) and the booking's record in line with
what MySQL — the truth — says of a booking. Every change is owner-checked Lua, so a late or repeated mirror
never touches another booking's seat. A mirror that cannot reach Redis never fails a booking MySQL has
decided: the performance is noted, and its map is realigned with MySQL in place once Redis answers.

The map it keeps also answers the lock strategies' refusals early (`refuse_seats_shown_taken`)."""

from __future__ import annotations

import logging
from collections.abc import Mapping

import redis

from chalicelib.domain.errors import SeatsLocked, SeatUnavailable, ServiceUnavailable
from chalicelib.domain.models import Booking, BookingRequest, BookingStatus
from chalicelib.domain.seat_map import shown_booking
from chalicelib.services.ports import BookingStore, SeatStore

log = logging.getLogger(__name__)


def mirror(seats: SeatStore, booking: Booking) -> None:
    """Make Redis say what MySQL says of `booking`: its seats booked while CONFIRMED, held with the hold's
    deadline while HELD (over whatever the map still shows: MySQL has just made it their holder), given back
    once it holds none (EXPIRED too). PENDING: nothing to do, its hold (or its place in line) is there."""
    try:
        if booking.status in (BookingStatus.CONFIRMED, BookingStatus.HELD):
            hold_until = booking.expires_at if booking.status is BookingStatus.HELD else None
            seats.confirm(
                booking.booking_id, booking.performance_id, booking.seat_ids, True, hold_until=hold_until
            )
        elif not booking.status.holds_seats:
            # The record first: from then on a late confirm of this booking cannot re-take the seats
            # (confirm_seats.lua refuses a CANCELLED booking).
            seats.mark_record(booking.booking_id, booking.status, booking.reason, booking.performance_id)
            seats.release(booking.booking_id, booking.performance_id, booking.seat_ids)
    except (redis.RedisError, ServiceUnavailable) as exc:
        log.warning(
            "booking %s is %s but the seat map missed it: %s", booking.booking_id, booking.status, exc
        )
        seats.note_missed(booking.performance_id)


def choose_and_book(bookings: BookingStore, seats: SeatStore, request: BookingRequest) -> Booking:
    """The synchronous strategies' best available: MySQL chooses the seats and stores the booking in one
    transaction (BookingStore.insert_best_available), then the map shows them."""
    best = request.best_available
    assert best is not None
    booking = Booking.from_request(request, request.accepted_status)
    try:
        stored = bookings.insert_best_available(booking, best.section, best.count, request.idempotency_key)
    except SeatsLocked as exc:
        raise SeatUnavailable(exc.seat_ids, "seat(s) are being booked by someone else right now") from exc
    if stored is None:
        raise SeatUnavailable([], f"section {best.section.section_id} has no {best.count} seats free")
    mirror(seats, stored)
    return stored


def refuse_seats_shown_taken(seats: SeatStore, request: BookingRequest) -> None:
    """The lock strategies' early refusal: a seat the map already shows sold or held is refused with one
    HMGET, before a lease or a MySQL transaction is spent on it (in a rush for one seat: nearly every one).
    MySQL stays the judge of every acceptance: a seat shown free still goes to MySQL, which may refuse it. A
    map that is not loaded, or a Redis that does not answer, says nothing: the request goes on to MySQL as
    if this check did not exist. A map may show a seat taken that MySQL has just freed (a cancel whose mirror
    missed Redis, until the map is realigned): then a 409 that a moment later would have been a 201 — the same
    trade the asynchronous strategies make, never a seat promised twice."""
    try:
        taken = seats.taken_among(request.performance_id, request.seat_ids)
        if taken:
            raise refusal(seats, request.performance_id, taken)
    except (redis.RedisError, ServiceUnavailable):
        return


def refusal(seats: SeatStore, performance_id: int, taken: Mapping[int, str]) -> SeatUnavailable:
    """The 409 for seats the map shows taken (seat -> its state), with their holders and, if holds hold
    some, the earliest of their deadlines (one more read, only then)."""
    holders = {seat: booking for seat, state in taken.items() if (booking := shown_booking(state))}
    held = [state[2:] for state in taken.values() if state.startswith("H:")]
    deadlines = seats.hold_deadlines(performance_id, held) if held else {}
    lapses_at = min(deadlines.values()) if len(deadlines) == len(set(held)) and deadlines else None
    return SeatUnavailable(list(taken), holders=holders, lapses_at=lapses_at)
