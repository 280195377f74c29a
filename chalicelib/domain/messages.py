"""Messages the asynchronous strategies put on queues and streams."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from chalicelib.domain.models import Booking, BookingRequest, BookingStatus

MESSAGE_TYPE = "booking.requested"
MAX_BOOKING_ID_LENGTH = 40


class InvalidMessage(ValueError):
    """A message no consumer can ever process (a poison message)."""

    def __init__(self, reason: str, booking_id: str | None = None) -> None:
        super().__init__(reason)
        self.booking_id = booking_id


@dataclass(frozen=True)
class BookingRequested:
    booking_id: str
    performance_id: int
    user_id: str
    seat_ids: tuple[int, ...]
    strategy: str

    @classmethod
    def of(cls, request: BookingRequest | Booking) -> BookingRequested:
        return cls(
            request.booking_id, request.performance_id, request.user_id, request.seat_ids, request.strategy
        )

    def as_booking(self, status: BookingStatus, reason: str | None = None) -> Booking:
        return Booking.from_request(self, status, reason)

    def to_json(self) -> str:
        return json.dumps(
            {
                "type": MESSAGE_TYPE,
                "booking_id": self.booking_id,
                "performance_id": self.performance_id,
                "user_id": self.user_id,
                "seat_ids": list(self.seat_ids),
                "strategy": self.strategy,
            },
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, body: str) -> BookingRequested:
        try:
            data = json.loads(body)
        except (TypeError, ValueError):
            raise InvalidMessage("body is not JSON") from None
        if not isinstance(data, dict):
            raise InvalidMessage("body is not a JSON object")
        booking_id = data.get("booking_id")
        if not isinstance(booking_id, str) or not 0 < len(booking_id) <= MAX_BOOKING_ID_LENGTH:
            raise InvalidMessage("no usable booking_id")
        try:
            return cls(
                booking_id=booking_id,
                performance_id=_positive_int(data.get("performance_id")),
                user_id=_text(data.get("user_id")),
                seat_ids=tuple(_positive_int(s) for s in _list(data.get("seat_ids"))),
                strategy=_text(data.get("strategy")),
            )
        except (TypeError, ValueError) as exc:
            raise InvalidMessage(f"malformed field: {exc}", booking_id=booking_id) from None


def _positive_int(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"expected a positive integer, got {value!r}")
    return value


def _text(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"expected a non-empty string, got {value!r}")
    return value


def _list(value: Any) -> list:
    if not isinstance(value, list) or not value:
        raise ValueError(f"expected a non-empty list, got {value!r}")
    return value


# --- stream_state: commands on the request stream and entries of the decision changelog -------------------
RELEASE_TYPE = "booking.release"
DECISION_TYPE = "booking.decided"


class LedgerOutcome:
    """What the seat ledger of `stream_state` decided or did for one booking."""

    CONFIRMED = "CONFIRMED"
    REJECTED = "REJECTED"
    RELEASED = "RELEASED"
    ALL = frozenset({CONFIRMED, REJECTED, RELEASED})


@dataclass(frozen=True)
class SeatsReleaseRequested:
    """Give a booking's seats back in the ledger (a cancel, or MySQL's guard refusing a decision).

    `holders` (seat -> booking id) tells the ledger who really holds seats when MySQL knows better."""

    booking_id: str
    performance_id: int
    user_id: str
    seat_ids: tuple[int, ...]
    holders: tuple[tuple[int, str], ...] = ()

    def to_json(self) -> str:
        return json.dumps(
            {
                "type": RELEASE_TYPE,
                "booking_id": self.booking_id,
                "performance_id": self.performance_id,
                "user_id": self.user_id,
                "seat_ids": list(self.seat_ids),
                "holders": [list(pair) for pair in self.holders],
            },
            separators=(",", ":"),
        )


@dataclass(frozen=True)
class LedgerEntry:
    """One changelog entry: the ledger's state change for a booking, replayable in order."""

    booking_id: str
    performance_id: int
    user_id: str
    seat_ids: tuple[int, ...]
    outcome: str
    reason: str | None = None
    holders: tuple[tuple[int, str], ...] = ()

    def to_json(self) -> str:
        return json.dumps(
            {
                "type": DECISION_TYPE,
                "booking_id": self.booking_id,
                "performance_id": self.performance_id,
                "user_id": self.user_id,
                "seat_ids": list(self.seat_ids),
                "outcome": self.outcome,
                "reason": self.reason,
                "holders": [list(pair) for pair in self.holders],
            },
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, body: str) -> LedgerEntry:
        data = _object(body)
        if data.get("type") != DECISION_TYPE or data.get("outcome") not in LedgerOutcome.ALL:
            raise InvalidMessage("not a ledger entry", booking_id=data.get("booking_id"))
        try:
            return cls(
                booking_id=_text(data.get("booking_id")),
                performance_id=_positive_int(data.get("performance_id")),
                user_id=_text(data.get("user_id")),
                seat_ids=tuple(_positive_int(s) for s in _list(data.get("seat_ids"))),
                outcome=data["outcome"],
                reason=data.get("reason"),
                holders=_holders(data.get("holders", [])),
            )
        except (TypeError, ValueError) as exc:
            raise InvalidMessage(f"malformed ledger entry: {exc}") from None


def parse_stream_command(body: str) -> BookingRequested | SeatsReleaseRequested:
    """A record of the `stream_state` request stream -> its command; InvalidMessage if it is none."""
    data = _object(body)
    if data.get("type") != RELEASE_TYPE:
        return BookingRequested.from_json(body)
    try:
        return SeatsReleaseRequested(
            booking_id=_text(data.get("booking_id")),
            performance_id=_positive_int(data.get("performance_id")),
            user_id=_text(data.get("user_id")),
            seat_ids=tuple(_positive_int(s) for s in _list(data.get("seat_ids"))),
            holders=_holders(data.get("holders", [])),
        )
    except (TypeError, ValueError) as exc:
        raise InvalidMessage(f"malformed release: {exc}", booking_id=data.get("booking_id")) from None


def _object(body: str) -> dict:
    try:
        data = json.loads(body)
    except (TypeError, ValueError):
        raise InvalidMessage("body is not JSON") from None
    if not isinstance(data, dict):
        raise InvalidMessage("body is not a JSON object")
    return data


def _holders(value: Any) -> tuple[tuple[int, str], ...]:
    if not isinstance(value, list):
        raise ValueError("holders must be a list of [seat, booking] pairs")
    return tuple((_positive_int(seat), _text(booking)) for seat, booking in value)
