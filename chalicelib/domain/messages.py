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

from chalicelib.domain.models import Booking, BookingRequest, BookingStatus, Performance, Section

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
    OMITTED_WHEN_NONE: ClassVar[tuple[str, ...]] = ("expires_at", "best_available")

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
    seat_ids: tuple[PositiveInt, ...]  # empty only for the best available, until chosen
    strategy: Text
    expires_at: float | None = None  # a hold's deadline (epoch seconds)
    # The best available: (section id, count, the section's first seat id, rows, seats per row): all the
    # in-line decider needs to choose, with no catalogue lookup.
    best_available: tuple[PositiveInt, PositiveInt, PositiveInt, PositiveInt, PositiveInt] | None = None

    @classmethod
    def of(
        cls, request: BookingRequest | Booking, performance: Performance | None = None
    ) -> BookingRequested:
        return cls(
            request.booking_id,
            request.performance_id,
            request.user_id,
            request.seat_ids,
            request.strategy,
            request.expires_at,
            _best_available(request, performance),
        )

    @property
    def wanted(self) -> tuple[int, int] | None:
        return None if self.best_available is None else (self.best_available[0], self.best_available[1])

    @property
    def section(self) -> Section | None:
        """The section the best available seats are chosen from (its layout as the message carries it)."""
        if self.best_available is None:
            return None
        section_id, _, first_seat_id, rows, seats_per_row = self.best_available
        return Section(section_id, self.performance_id, "", 0, rows, seats_per_row, first_seat_id)

    def as_booking(self, status: BookingStatus, reason: str | None = None) -> Booking:
        return Booking.from_request(self, status, reason)

    @classmethod
    def from_json(cls, body: str) -> BookingRequested:
        return cls.from_object(_object(body))

    @classmethod
    def from_object(cls, data: dict) -> BookingRequested:
        if _usable_booking_id(data) is None:
            raise InvalidMessage("no usable booking_id")
        message = cls._decode(data, "malformed field")
        if not message.seat_ids and message.best_available is None:
            raise InvalidMessage(
                "malformed field: expected a non-empty list, got []", booking_id=message.booking_id
            )
        return message


def _best_available(
    request: BookingRequest | Booking, performance: Performance | None
) -> tuple[int, int, int, int, int] | None:
    if isinstance(request, BookingRequest):
        best = request.best_available
        if best is None:
            return None
        section, count = best.section, best.count
    else:
        if request.wanted is None or request.seat_ids:  # chosen already: a plain request from here on
            return None
        section_id, count = request.wanted
        section = performance.section(section_id)  # type: ignore[union-attr]
        if section is None:
            raise ValueError(f"section {section_id} is not one of performance {request.performance_id}'s")
    return (section.section_id, count, section.first_seat_id, section.rows, section.seats_per_row)


# --- stream_state: commands on the request stream and entries of the decision changelog -------------------
RELEASE_TYPE = "booking.release"
DEADLINE_TYPE = "booking.deadline"
DECISION_TYPE = "booking.decided"


class LedgerOutcome:
    """What the seat ledger of `stream_state` decided or did for one booking."""

    CONFIRMED = "CONFIRMED"
    REJECTED = "REJECTED"
    RELEASED = "RELEASED"
    DEADLINE = "DEADLINE"  # a hold's deadline moved (extended) or went (confirmed): nothing to persist
    ALL = frozenset({CONFIRMED, REJECTED, RELEASED, DEADLINE})


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
class HoldDeadlineChanged(Message):
    """A hold's deadline as MySQL has it now: later (extended), or none (confirmed: it holds for good). The
    ledger frees a hold's seats at its deadline, so it must hear of both, behind the booking's request."""

    TYPE = DEADLINE_TYPE

    booking_id: Text
    performance_id: PositiveInt
    user_id: Text
    seat_ids: SeatIds
    expires_at: float | None = None


@dataclass(frozen=True)
class LedgerEntry(Message):
    """One changelog entry: the ledger's state change for a booking, replayable in order."""

    TYPE = DECISION_TYPE

    booking_id: Text
    performance_id: PositiveInt
    user_id: Text
    seat_ids: tuple[PositiveInt, ...]  # empty: a best available request refused (none chosen)
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


StreamCommand = BookingRequested | SeatsReleaseRequested | HoldDeadlineChanged


def parse_stream_command(body: str) -> StreamCommand:
    """A record of the `stream_state` request stream -> its command; InvalidMessage if it is none."""
    data = _object(body)
    if data.get("type") == RELEASE_TYPE:
        return SeatsReleaseRequested._decode(data, "malformed release")
    if data.get("type") == DEADLINE_TYPE:
        return HoldDeadlineChanged._decode(data, "malformed deadline")
    return BookingRequested.from_object(data)
