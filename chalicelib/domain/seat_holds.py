"""What Redis holds for an accepted booking, and what taking its seats answers: the vocabulary of the seat
store port (services/ports.py SeatStore), shared by the strategies and the Redis adapter
(adapters/redis_seats.py), which stores a record as a hash of `to_fields` and runs the take
(strategies/redis_async/reserve_seats.lua)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum

from chalicelib.domain.models import Booking, BookingStatus


class ReserveResult(Enum):
    RESERVED = 1
    ALREADY_RESERVED = 2
    UNAVAILABLE = 0
    UNKNOWN_SEATS = -1
    NOT_LOADED = -2


@dataclass(frozen=True)
class ReserveOutcome:
    result: ReserveResult
    seat_ids: tuple[int, ...] = ()
    holders: Mapping[int, str] = field(default_factory=dict)  # refused seat -> the booking holding it
    states: Mapping[int, str] = field(default_factory=dict)  # refused seat -> its state ("H:…", "B:…")


@dataclass(frozen=True)
class BookingRecord:
    """What Redis knows of an accepted booking before (and after) MySQL has it."""

    booking_id: str
    performance_id: int
    user_id: str
    seat_ids: tuple[int, ...]
    strategy: str
    status: BookingStatus
    reason: str | None = None
    expires_at: float | None = None  # a hold's deadline (epoch seconds)

    def as_booking(self) -> Booking:
        return Booking(
            booking_id=self.booking_id,
            performance_id=self.performance_id,
            user_id=self.user_id,
            seat_ids=self.seat_ids,
            status=self.status,
            strategy=self.strategy,
            reason=self.reason,
            expires_at=self.expires_at,
        )

    def to_fields(self) -> dict[str, str]:
        return {
            "performance_id": str(self.performance_id),
            "user_id": self.user_id,
            "seat_ids": ",".join(map(str, self.seat_ids)),
            "strategy": self.strategy,
            "status": self.status.value,
            "reason": self.reason or "",
            "expires_at": "" if self.expires_at is None else repr(self.expires_at),
        }

    @classmethod
    def from_fields(cls, booking_id: str, fields: Mapping[str, str]) -> BookingRecord:
        return cls(
            booking_id=booking_id,
            performance_id=int(fields["performance_id"]),
            user_id=fields["user_id"],
            seat_ids=tuple(int(s) for s in fields["seat_ids"].split(",") if s),
            strategy=fields["strategy"],
            status=BookingStatus(fields["status"]),
            reason=fields.get("reason") or None,
            expires_at=float(fields["expires_at"]) if fields.get("expires_at") else None,
        )
