"""How the seat map writes a seat's state: one string per seat, the same in Redis, in its Lua scripts
(chalicelib/adapters/lua, chalicelib/strategies/redis_async) and in the reconcile job's comparison with MySQL.

    "0"            free
    "H:<booking>"  held by a PENDING booking
    "B:<booking>"  booked by a CONFIRMED booking
"""

from __future__ import annotations

import dataclasses

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


# One character per seat status: the compact view's letters, and the change log's (the Lua scripts write a
# seat's new state as its letter: A free, H held, B booked).
STATUS_LETTERS = {SeatStatus.AVAILABLE: "A", SeatStatus.HELD: "H", SeatStatus.BOOKED: "B"}
STATUS_OF_LETTER = {letter: status for status, letter in STATUS_LETTERS.items()}
# Versions the change log keeps per performance (~30 bytes each at one seat a version): at 100 seat changes a
# second, 10 s of deltas; a reader further behind reads the whole map again (410 VERSION_GONE).
CHANGE_HISTORY = 1_000


@dataclasses.dataclass(frozen=True)
class ChangeLogRead:
    """What the change log holds after a version a reader names: the map's version now, and the log's
    entries after the named one (oldest first), None if the log does not reach back that far."""

    version: int
    entries: list[str] | None


def changes_after(since: int, version: int, entries: list[str]) -> dict[int, SeatStatus] | None:
    """The seats the change log's `entries` ("<version> <seat>=<letter> ...", oldest first) changed after
    version `since`, each with its status at `version` (the last entry naming a seat wins); None unless the
    entries are exactly the versions since + 1 .. version, one each (the log's promise, checked rather than
    trusted: a reader given anything else reloads the whole map)."""
    statuses: dict[int, SeatStatus] = {}
    expected = since + 1
    for entry in entries:
        entry_version, *seat_changes = entry.split(" ")
        if int(entry_version) != expected:
            return None
        expected += 1
        for change in seat_changes:
            seat, _, letter = change.partition("=")
            statuses[int(seat)] = STATUS_OF_LETTER[letter]
    return statuses if expected == version + 1 else None
