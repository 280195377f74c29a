"""Messages the asynchronous strategies put on queues and streams.

Each message is a frozen dataclass (the domain's value) whose annotations are also its wire schema: pydantic
decodes and checks a body against them (a TypeAdapter per class). The wire format is the one these messages
always had, byte for byte: a JSON object, its "type" first, compact, non-ASCII escaped."""

from __future__ import annotations

import json
from dataclasses import MISSING, dataclass, fields
from functools import cache
from typing import Annotated, ClassVar, TypeVar

from pydantic import Field, StrictInt, StrictStr, TypeAdapter, ValidationError

from chalicelib.domain.models import Booking, BookingRequest, BookingStatus

MESSAGE_TYPE = "booking.requested"
MAX_BOOKING_ID_LENGTH = 40

PositiveInt = Annotated[StrictInt, Field(ge=1)]
Text = Annotated[StrictStr, Field(min_length=1)]
BookingId = Annotated[StrictStr, Field(min_length=1, max_length=MAX_BOOKING_ID_LENGTH)]
SeatIds = Annotated[tuple[PositiveInt, ...], Field(min_length=1)]
Holders = tuple[tuple[PositiveInt, Text], ...]  # (seat, the booking id holding it)


class InvalidMessage(ValueError):
    """A message no consumer can ever process (a poison message)."""

    def __init__(self, reason: str, booking_id: str | None = None) -> None:
        super().__init__(reason)
        self.booking_id = booking_id


class Message:
    """What every message does: its JSON body (`to_json`), and a checked message from one (`_decode`)."""

    TYPE: ClassVar[str]
    # Fields added later, left out while None: a message without them is byte for byte what it always was.
    OMITTED_WHEN_NONE: ClassVar[tuple[str, ...]] = ("expires_at",)

    def to_json(self) -> str:
        fields = _adapter(type(self)).dump_python(self, mode="json")
        for name in self.OMITTED_WHEN_NONE:
            if fields.get(name, 0) is None:
                del fields[name]
        return json.dumps({"type": self.TYPE, **fields}, separators=(",", ":"))

    @classmethod
    def _decode(cls: type[M], data: dict, malformed: str) -> M:
        """The message in `data` (a JSON object); InvalidMessage("<malformed>: <why>") naming the booking
        id where it is usable, so a consumer can still fail that booking."""
        try:
            return _adapter(cls).validate_python(data)
        except ValidationError:
            reason = _why(cls, data)
            raise InvalidMessage(f"{malformed}: {reason}", booking_id=_usable_booking_id(data)) from None


M = TypeVar("M", bound=Message)


@cache
def _adapter(cls: type[Message]) -> TypeAdapter:
    return TypeAdapter(cls)


def _why(cls: type[Message], data: dict) -> str:
    """Why `data` is no `cls`, in the words these refusals always had (a poison message's reason is kept with
    its booking): the first bad field, a missing one read as null."""
    nulls = {f.name: None for f in fields(cls) if f.default is MISSING}  # type: ignore[arg-type]
    try:
        _adapter(cls).validate_python({**nulls, **data})
    except ValidationError as invalid:
        error = invalid.errors(include_url=False)[0]
    if error["loc"][0] == "holders":
        return "holders must be a list of [seat, booking] pairs"
    for prefix, expected in EXPECTED.items():
        if error["type"].startswith(prefix):
            return f"expected {expected}, got {error['input']!r}"
    return f"{'.'.join(map(str, error['loc']))}: {error['msg']}"


EXPECTED = {
    "int": "a positive integer",
    "greater_than_equal": "a positive integer",
    "string": "a non-empty string",
    "tuple": "a non-empty list",
    "too_short": "a non-empty list",
}


def _usable_booking_id(data: dict) -> str | None:
    booking_id = data.get("booking_id")
    return (
        booking_id if isinstance(booking_id, str) and 0 < len(booking_id) <= MAX_BOOKING_ID_LENGTH else None
    )


def _object(body: str) -> dict:
    try:
        data = json.loads(body)
    except (TypeError, ValueError, RecursionError):
        raise InvalidMessage("body is not JSON") from None
    if not isinstance(data, dict):
        raise InvalidMessage("body is not a JSON object")
    return data


@dataclass(frozen=True)
class BookingRequested(Message):
    TYPE = MESSAGE_TYPE

    booking_id: BookingId
    performance_id: PositiveInt
    user_id: Text
    seat_ids: SeatIds
    strategy: Text
    expires_at: float | None = None  # a hold's deadline (epoch seconds)

    @classmethod
    def of(cls, request: BookingRequest | Booking) -> BookingRequested:
        return cls(
            request.booking_id,
            request.performance_id,
            request.user_id,
            request.seat_ids,
            request.strategy,
            request.expires_at,
        )

    def as_booking(self, status: BookingStatus, reason: str | None = None) -> Booking:
        return Booking.from_request(self, status, reason)

    @classmethod
    def from_json(cls, body: str) -> BookingRequested:
        return cls.from_object(_object(body))

    @classmethod
    def from_object(cls, data: dict) -> BookingRequested:
        if _usable_booking_id(data) is None:
            raise InvalidMessage("no usable booking_id")
        return cls._decode(data, "malformed field")


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
class SeatsReleaseRequested(Message):
    """Give a booking's seats back in the ledger (a cancel, or MySQL's guard refusing a decision).

    `holders` (seat -> booking id) tells the ledger who really holds seats when MySQL knows better."""

    TYPE = RELEASE_TYPE

    booking_id: Text
    performance_id: PositiveInt
    user_id: Text
    seat_ids: SeatIds
    holders: Holders = ()


@dataclass(frozen=True)
class LedgerEntry(Message):
    """One changelog entry: the ledger's state change for a booking, replayable in order."""

    TYPE = DECISION_TYPE

    booking_id: Text
    performance_id: PositiveInt
    user_id: Text
    seat_ids: SeatIds
    outcome: str
    reason: StrictStr | None = None
    holders: Holders = ()
    expires_at: float | None = None  # CONFIRMED for a hold: the ledger frees its seats from then on

    @classmethod
    def from_json(cls, body: str) -> LedgerEntry:
        data = _object(body)
        if data.get("type") != DECISION_TYPE or data.get("outcome") not in LedgerOutcome.ALL:
            raise InvalidMessage("not a ledger entry", booking_id=_usable_booking_id(data))
        return cls._decode(data, "malformed ledger entry")


def parse_stream_command(body: str) -> BookingRequested | SeatsReleaseRequested:
    """A record of the `stream_state` request stream -> its command; InvalidMessage if it is none."""
    data = _object(body)
    if data.get("type") != RELEASE_TYPE:
        return BookingRequested.from_object(data)
    return SeatsReleaseRequested._decode(data, "malformed release")
