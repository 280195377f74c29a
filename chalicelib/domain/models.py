"""The ticketing domain: what an event, a performance, a seat and a booking are. No infrastructure here."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Protocol

# The five ways to decide who gets a seat (chalicelib/strategies): a performance names one.
STRATEGY_NAMES = ("db_lock", "redis_lock", "redis_async", "fifo_partition", "stream_state")


class BookingStatus(StrEnum):
    PENDING = "PENDING"  # accepted, not yet final
    CONFIRMED = "CONFIRMED"
    REJECTED = "REJECTED"  # a seat was taken; nothing held
    FAILED = "FAILED"  # system failure after acceptance; seats released, safe to retry
    CANCELLED = "CANCELLED"
    HELD = "HELD"  # a hold: the seats are the user's until `expires_at`, then free unless confirmed
    EXPIRED = "EXPIRED"  # a hold (or a PENDING one) whose time ran out; seats released

    @property
    def holds_seats(self) -> bool:
        return self in (BookingStatus.PENDING, BookingStatus.HELD, BookingStatus.CONFIRMED)

    @property
    def may_lapse(self) -> bool:
        """A booking in this status with an `expires_at` is EXPIRED from that instant on."""
        return self in (BookingStatus.PENDING, BookingStatus.HELD)

    @property
    def is_final(self) -> bool:
        return self is not BookingStatus.PENDING


class SeatStatus(StrEnum):
    AVAILABLE = "AVAILABLE"
    HELD = "HELD"  # taken by a PENDING booking or a hold (HELD)
    BOOKED = "BOOKED"  # taken by a CONFIRMED booking


@dataclass(frozen=True)
class SectionSpec:
    name: str
    price: int
    rows: int
    seats_per_row: int

    @property
    def seat_count(self) -> int:
        return self.rows * self.seats_per_row


@dataclass(frozen=True)
class PerformanceSpec:
    starts_at: datetime
    strategy: str
    admit_per_second: int | None = None  # a waiting room's rate; None: no waiting room


@dataclass(frozen=True)
class EventSpec:
    name: str
    venue: str
    performances: tuple[PerformanceSpec, ...]
    sections: tuple[SectionSpec, ...]


@dataclass(frozen=True)
class Section:
    section_id: int
    performance_id: int
    name: str
    price: int
    rows: int
    seats_per_row: int
    first_seat_id: int

    @property
    def seat_count(self) -> int:
        return self.rows * self.seats_per_row

    @property
    def last_seat_id(self) -> int:
        return self.first_seat_id + self.seat_count - 1

    def contains(self, seat_id: int) -> bool:
        return self.first_seat_id <= seat_id <= self.last_seat_id

    def position_of(self, seat_id: int) -> tuple[int, int]:
        """(row, number), both from 1: seat ids run row by row through the section."""
        offset = seat_id - self.first_seat_id
        return offset // self.seats_per_row + 1, offset % self.seats_per_row + 1


@dataclass(frozen=True)
class Performance:
    performance_id: int
    event_id: int
    starts_at: str  # ISO 8601 with the offset it was created with
    strategy: str
    sections: tuple[Section, ...]
    # Its waiting room admits this many people to booking per second; None: no waiting room.
    admit_per_second: int | None = None

    def section_of(self, seat_id: int) -> Section | None:
        for section in self.sections:
            if section.contains(seat_id):
                return section
        return None

    def section(self, section_id: int) -> Section | None:
        """The section of this id, None if it is not one of this performance's."""
        return next((section for section in self.sections if section.section_id == section_id), None)

    @property
    def seat_ids(self) -> range:
        return range(self.sections[0].first_seat_id, self.sections[-1].last_seat_id + 1)


@dataclass(frozen=True)
class Event:
    event_id: int
    name: str
    venue: str
    performances: tuple[Performance, ...] = ()


class MintedWhenFirstRead:
    """A dataclass field given either its value or a function that makes it: the function is called when the
    field is first read, and its value kept. A booking request's id is given so (services/booking.py): a
    request refused before any step reads its id — a refusal from the seat map, nearly every request of a
    rush — never mints one; a strategy that needs the id first (redis_async's take writes the booking's
    record with the seats) mints it there."""

    def __set_name__(self, owner: type, name: str) -> None:
        self._slot = f"_{name}_value"

    def __get__(self, obj: Any, objtype: Any = None) -> Any:
        if obj is None:
            raise AttributeError  # read on the class: a required field, no default
        value = obj.__dict__[self._slot]
        if callable(value):
            value = obj.__dict__[self._slot] = value()
        return value

    def __set__(self, obj: Any, value: Any) -> None:
        obj.__dict__[self._slot] = value  # the frozen dataclass's __init__ sets it once, through here


@dataclass(frozen=True)
class BestAvailable:
    """`count` seats of a section, chosen where the strategy decides (domain/best_available.py)."""

    section: Section
    count: int

    @property
    def as_pair(self) -> tuple[int, int]:
        return self.section.section_id, self.count


@dataclass(frozen=True)
class BookingRequest:
    # The id, or a function that mints it when a step first reads it (MintedWhenFirstRead).
    booking_id: str | Callable[[], str] = MintedWhenFirstRead()  # type: ignore[assignment]
    performance_id: int
    user_id: str
    seat_ids: tuple[int, ...]  # distinct, sorted: every strategy takes seats in this fixed order
    strategy: str
    performance: Performance | None = field(default=None, compare=False, repr=False)
    # The client's Idempotency-Key, kept with the booking in MySQL: unique per user, so a retry after the
    # idempotency record was lost (a Redis data loss) finds the first booking instead of making a second.
    idempotency_key: str | None = None
    # A hold ("hold": true): the instant (epoch seconds) its seats go back to the crowd unless confirmed.
    expires_at: float | None = None
    # Best available: no seat_ids (empty) until the strategy has chosen them.
    best_available: BestAvailable | None = None

    @property
    def accepted_status(self) -> BookingStatus:
        """What a strategy makes of the request once it has the seats: a hold HELD, a purchase CONFIRMED."""
        return BookingStatus.HELD if self.expires_at is not None else BookingStatus.CONFIRMED


class BookingFacts(Protocol):
    """What every form of a booking request carries (BookingRequest, a queue's BookingRequested)."""

    booking_id: str
    performance_id: int
    user_id: str
    seat_ids: tuple[int, ...]
    strategy: str
    expires_at: float | None


HOLD_EXPIRED_REASON = "the hold expired"


def _wanted(request: BookingFacts) -> tuple[int, int] | None:
    best = getattr(request, "best_available", None)
    if best is None:
        return None
    return best.as_pair if isinstance(best, BestAvailable) else (best[0], best[1])


@dataclass(frozen=True)
class Booking:
    booking_id: str
    performance_id: int
    user_id: str
    seat_ids: tuple[int, ...]
    status: BookingStatus
    strategy: str
    reason: str | None = None
    expires_at: float | None = None  # a hold's deadline (epoch seconds); None for a purchase
    extensions: int = 0  # how often the hold was extended
    payment_reference: str | None = None  # what confirmed a hold
    # Best available: (section id, count) asked for; `seat_ids` stays empty until the strategy chose them.
    wanted: tuple[int, int] | None = None

    @classmethod
    def from_request(cls, request: BookingFacts, status: BookingStatus, reason: str | None = None) -> Booking:
        return cls(
            booking_id=request.booking_id,
            performance_id=request.performance_id,
            user_id=request.user_id,
            seat_ids=request.seat_ids,
            status=status,
            strategy=request.strategy,
            reason=reason,
            expires_at=request.expires_at,
            wanted=_wanted(request),
        )

    def with_seats(self, seat_ids: tuple[int, ...]) -> Booking:
        """The booking once its best available seats are chosen."""
        return dataclasses.replace(self, seat_ids=tuple(sorted(seat_ids)))

    def lapsed(self, now: float) -> bool:
        """Its hold ran out: from `expires_at` on, a PENDING or HELD booking holds nothing, whether or not
        anything has written EXPIRED yet (the sweeper settles it later; correctness never waits for it)."""
        return self.expires_at is not None and self.status.may_lapse and self.expires_at <= now

    def as_of(self, now: float) -> Booking:
        """The booking as it is at `now`: EXPIRED once lapsed, whatever the store still says."""
        if not self.lapsed(now):
            return self
        return dataclasses.replace(self, status=BookingStatus.EXPIRED, reason=HOLD_EXPIRED_REASON)

    def to_dict(self) -> dict:
        return {
            "booking_id": self.booking_id,
            "performance_id": self.performance_id,
            "user_id": self.user_id,
            "seat_ids": list(self.seat_ids),
            "status": self.status.value,
            "strategy": self.strategy,
            "reason": self.reason,
            # A hold's: its deadline, how often it was extended, what confirmed it (null for a purchase).
            "expires_at": None if self.expires_at is None else rfc3339(self.expires_at),
            "extensions": self.extensions,
            "payment_reference": self.payment_reference,
        }


def rfc3339(epoch_seconds: float) -> str:
    """UTC, millisecond precision, "Z": 2026-12-03T06:01:02.345Z."""
    moment = datetime.fromtimestamp(epoch_seconds, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def epoch_of_rfc3339(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


# reconcile_log actions of the reconcile job: what it repaired, and what a stream_state cancel leaves for it
# to do (send the processor's ledger a release it may have missed).
SEAT_BOOKED_ACTION = "reconcile_seat_booked"
SEAT_HELD_ACTION = "reconcile_seat_held"
SEAT_RELEASED_ACTION = "reconcile_seat_released"
LEDGER_RELEASE_PENDING_ACTION = "ledger_release_pending"
LEDGER_RELEASE_RESENT_ACTION = "ledger_release_resent"


@dataclass(frozen=True)
class ReconcileEntry:
    """A repair or compensation the system made on its own, for people to audit later."""

    action: str
    detail: dict
    booking_id: str | None = None
    performance_id: int | None = None
    message_id: str | None = None

    @property
    def dedup_key(self) -> str:
        return f"{self.action}:{self.booking_id or self.message_id or ''}"
