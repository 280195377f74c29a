"""Keeping the Redis seat map (what GET /performances/{id}/seats shows) in line with bookings that a
strategy made or cancelled in MySQL itself. MySQL stays the truth: a seat map that missed an update is
repaired when it is rebuilt from MySQL, so a failed mirror never fails a booking that is already stored."""

from __future__ import annotations

import logging

import redis

from chalicelib.adapters.redis_seats import RedisSeatStore
from chalicelib.domain.errors import ServiceUnavailable
from chalicelib.domain.models import Booking

log = logging.getLogger(__name__)


def mirror_booked(seats: RedisSeatStore, booking: Booking) -> None:
    """The strategy has just stored `booking` as the seats' active holder in MySQL: the map says so, over
    whatever it still shows (a cancelled booking whose release has not reached Redis yet)."""
    try:
        seats.confirm(booking.booking_id, booking.performance_id, booking.seat_ids, overwrite=True)
    except (redis.RedisError, ServiceUnavailable) as exc:
        log.warning("booking %s is stored but the seat map missed it: %s", booking.booking_id, exc)
        seats.note_missed(booking.performance_id)


def mirror_released(seats: RedisSeatStore, booking: Booking) -> None:
    # The record first: from then on a late confirm of this booking cannot re-take the seats
    # (confirm_seats.lua refuses a CANCELLED booking).
    try:
        seats.mark_record(booking.booking_id, booking.status, booking.reason)
        seats.release(booking.booking_id, booking.performance_id, booking.seat_ids)
    except (redis.RedisError, ServiceUnavailable) as exc:
        # MySQL has the cancel, and that is what the caller is told; the map is rebuilt when Redis answers.
        log.warning("booking %s is cancelled but the seat map missed it: %s", booking.booking_id, exc)
        seats.note_missed(booking.performance_id)
