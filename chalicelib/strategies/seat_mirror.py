"""Keeping the Redis seat map (what GET /performances/{id}/seats shows) and the booking's record in line with
what MySQL — the truth — says of a booking. Every change is owner-checked Lua, so a late or repeated mirror
never touches another booking's seat. A mirror that cannot reach Redis never fails a booking MySQL has
decided: the performance is noted, and its map is realigned with MySQL in place once Redis answers."""

from __future__ import annotations

import logging

import redis

from chalicelib.domain.errors import ServiceUnavailable
from chalicelib.domain.models import Booking, BookingStatus
from chalicelib.services.ports import SeatStore

log = logging.getLogger(__name__)


def mirror(seats: SeatStore, booking: Booking) -> None:
    """Make Redis say what MySQL says of `booking`: its seats booked while CONFIRMED (over whatever the map
    still shows: MySQL has just made it their holder), given back once it holds none. PENDING: nothing to do,
    its hold (or its place in line) is already there."""
    try:
        if booking.status is BookingStatus.CONFIRMED:
            seats.confirm(booking.booking_id, booking.performance_id, booking.seat_ids, overwrite=True)
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
