"""A waiting room's ticket as its queue knows it (chalicelib/services/waiting_room.py gives it meaning)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TicketState:
    ticket: str
    number: int  # the ticket's place in join order (1, 2, ...)
    serving: float  # how far admission has advanced: the numbers up to it are admitted
    turn_ms: int  # when its number is (or was) reached: epoch milliseconds
    collected_ms: int | None  # when its user first read it on or after its turn
    now_ms: int  # the room's time of this answer (never behind an earlier answer's)
    new: bool = False
    lapsed: bool = False
