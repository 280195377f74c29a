"""The rules of a hold (docs/api.md "Holds"): what a confirm, an extension or a settlement makes of a booking
at a given instant. Pure: MySQL's repository (adapters/mysql.py) applies them under the booking row's lock,
the in-memory store of the unit tests (tests/support/fakes.py) the same way."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from chalicelib.domain.models import HOLD_EXPIRED_REASON, Booking, BookingStatus


class HoldOutcome(StrEnum):
    CHANGED = "changed"  # confirmed, or extended
    UNCHANGED = "unchanged"  # confirmed already with the same payment reference: the same answer again
    LAPSED = "lapsed"  # its time ran out: EXPIRED (written so by this call if nothing had)
    AT_LIMIT = "at_limit"  # extended as often as allowed
    NOT_HELD = "not_held"  # not a HELD booking (or none at all)


@dataclass(frozen=True)
class HoldChange:
    """A hold after a confirm or an extension: what happened, the booking as it is now (None: no booking of
    that id), and whether this call wrote EXPIRED (its seats are then to be given back elsewhere too)."""

    outcome: HoldOutcome
    booking: Booking | None
    expired: bool = False


def confirm_outcome(booking: Booking, now: float, payment_reference: str) -> HoldOutcome:
    """What confirming `booking` at `now` does: CHANGED (HELD -> CONFIRMED), UNCHANGED (the same confirm
    again), LAPSED (past its deadline: to be expired), NOT_HELD."""
    if booking.lapsed(now):
        return HoldOutcome.LAPSED
    if booking.status is BookingStatus.CONFIRMED and booking.expires_at is not None:
        same = booking.payment_reference == payment_reference
        return HoldOutcome.UNCHANGED if same else HoldOutcome.NOT_HELD
    return _held_or_not(booking)


def extend_outcome(booking: Booking, now: float, max_extensions: int) -> HoldOutcome:
    """What extending `booking` at `now` does: CHANGED, AT_LIMIT, LAPSED (to be expired), NOT_HELD."""
    if booking.lapsed(now):
        return HoldOutcome.LAPSED
    outcome = _held_or_not(booking)
    if outcome is HoldOutcome.CHANGED and booking.extensions >= max_extensions:
        return HoldOutcome.AT_LIMIT
    return outcome


def _held_or_not(booking: Booking) -> HoldOutcome:
    if booking.status is BookingStatus.HELD:
        return HoldOutcome.CHANGED
    return HoldOutcome.LAPSED if booking.status is BookingStatus.EXPIRED else HoldOutcome.NOT_HELD


def settled_as(
    booking: Booking, status: BookingStatus, reason: str | None, now: float
) -> tuple[BookingStatus, str | None]:
    """What settling a PENDING booking to `status` makes of it: a hold is HELD rather than CONFIRMED, and
    EXPIRED rather than taking anything once its time has run out."""
    if booking.expires_at is None or not status.holds_seats:
        return status, reason
    if booking.expires_at <= now:
        return BookingStatus.EXPIRED, HOLD_EXPIRED_REASON
    return BookingStatus.HELD, reason
