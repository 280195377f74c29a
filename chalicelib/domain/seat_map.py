"""How the seat map writes a seat's state: one string per seat, the same in Redis, in its Lua scripts
(chalicelib/adapters/lua, chalicelib/strategies/redis_async) and in the reconcile job's comparison with MySQL.

    "0"            free
    "H:<booking>"  held by a PENDING booking
    "B:<booking>"  booked by a CONFIRMED booking
"""

from __future__ import annotations

from chalicelib.domain.models import BookingStatus, SeatStatus

FREE = "0"


def seat_status_of(state: str) -> SeatStatus:
    if state == FREE:
        return SeatStatus.AVAILABLE
    return SeatStatus.HELD if state.startswith("H:") else SeatStatus.BOOKED


def holder_state(booking_id: str, status: BookingStatus) -> str:
    """The map's state of a seat an active booking holds: booked once CONFIRMED, held while PENDING."""
    return f"{'B' if status is BookingStatus.CONFIRMED else 'H'}:{booking_id}"


def shown_booking(state: str | None) -> str | None:
    """The booking a seat state names ("H:<id>" or "B:<id>"), None for a free or unknown seat."""
    return state[2:] if state and state[:2] in ("H:", "B:") else None
