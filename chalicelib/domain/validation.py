"""Input rules of the contract, checked before anything is touched: bad input changes nothing.

The request bodies are pydantic models: their types and limits are the rules, and their JSON schemas are the
OpenAPI document's (chalicelib/openapi.py). A refused body is one INVALID_REQUEST, worded as docs/api.md has
always worded it: the first offending field in reading order (an object's unknown fields before its fields).
"""

# No `from __future__ import annotations`: pydantic reads these annotations at class creation, and the models
# built in `booking_request_model` name a local (the seat limit).
import json
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from typing import Annotated, Any, ClassVar, Literal, get_args

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainValidator,
    ValidationError,
    WithJsonSchema,
)
from pydantic_core import ErrorDetails, PydanticCustomError

from chalicelib.domain.errors import Forbidden, InvalidRequest, NotFound, PayloadTooLarge
from chalicelib.domain.models import STRATEGY_NAMES, EventSpec, PerformanceSpec, SectionSpec

MAX_NAME_LENGTH = 200
MAX_USER_ID_LENGTH = 64
MAX_IDEMPOTENCY_KEY_LENGTH = 128
MAX_PAYMENT_REFERENCE_LENGTH = 128
MAX_PERFORMANCES = 50
MAX_SECTIONS = 50
MAX_ROWS = 500
MAX_SEATS_PER_ROW = 500
MAX_SEATS_PER_PERFORMANCE = 50_000
MAX_PRICE = 10**12
MAX_ADMIT_PER_SECOND = 100_000
# The largest valid body (an event with 50 sections of 200-character escaped names) is ~150 kB; anything
# bigger is refused unread. API Gateway itself caps payloads at 10 MB; the local adapter uses this limit too.
MAX_BODY_BYTES = 512 * 1024


def parse_json_body(raw: bytes | str | None) -> Any:
    """The request body as JSON; bad, oversized or pathologically nested bodies are the client's error."""
    if not raw:
        raise InvalidRequest("a JSON request body is required")
    if len(raw) > MAX_BODY_BYTES:
        raise PayloadTooLarge(f"bodies are limited to {MAX_BODY_BYTES} bytes")
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):
        # RecursionError: `[[[[...` nested deeper than the interpreter's stack (a 500 before).
        raise InvalidRequest("the request body is not valid JSON") from None


def parse_path_id(raw: str, what: str) -> int:
    """Ids in paths are positive integers; anything else cannot name an existing thing."""
    if not raw.isascii() or not raw.isdigit() or len(raw) > 18 or int(raw) < 1:
        raise NotFound(f"{what} {raw!r} not found")
    return int(raw)


def parse_starts_at(raw: Any) -> datetime:
    # ISO 8601 is printable ASCII; fromisoformat() alone lets a NUL through ("...+09:00\x00").
    if not isinstance(raw, str) or len(raw) > 64 or not (raw.isascii() and raw.isprintable()):
        raise InvalidRequest("'starts_at' must be an ISO 8601 date-time string", field="starts_at")
    try:
        value = datetime.fromisoformat(raw)
    except ValueError:
        raise InvalidRequest("'starts_at' must be an ISO 8601 date-time string", field="starts_at") from None
    if value.tzinfo is None:
        raise InvalidRequest("'starts_at' must carry a UTC offset, e.g. +09:00 or Z", field="starts_at")
    try:
        utc = value.astimezone(UTC)
    except OverflowError:  # 0001-01-01T00:00+14:00 has no UTC time (was a 500 when stored)
        utc = None
    # MySQL's DATETIME (starts_at_utc) holds the years 1000 to 9999.
    if utc is None or not 1000 <= utc.year <= 9999:
        raise InvalidRequest("'starts_at' must be in the years 1000 to 9999 (UTC)", field="starts_at")
    return value


def parse_idempotency_key(raw: str | None) -> str | None:
    if raw is None:
        return None
    if not 1 <= len(raw) <= MAX_IDEMPOTENCY_KEY_LENGTH or not all(" " <= ch <= "~" for ch in raw):
        raise InvalidRequest(
            f"Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY_LENGTH} printable ASCII characters",
            field="Idempotency-Key",
        )
    return raw


# --- the field types of request bodies, each with the contract's wording of its refusal --------------------
@dataclass(frozen=True, eq=False)
class Wording:
    """How the contract words a refused field: `otherwise`, or the message for a pydantic error type; `items`
    for a refused item of a list of values. `{field}` is the field's name, the error's context the rest."""

    otherwise: str
    by_error: Mapping[str, str] = field(default_factory=dict)
    items: str | None = None

    def message(self, name: str, error: ErrorDetails, in_item: bool) -> str:
        template = self.items if in_item and self.items else self.by_error.get(error["type"], self.otherwise)
        return template.format(field=name, message=error["msg"], **error.get("ctx", {}))


def _not_blank(value: Any) -> Any:
    if isinstance(value, str) and not value.strip():
        raise PydanticCustomError("blank", "blank")
    return value


def _no_control_characters(value: str) -> str:
    # Category C* = control, format, surrogate, private use, unassigned: never part of a name. Printable ASCII
    # (0x20-0x7E, what nearly every id is) has none: answered without a look-up per character.
    if value.isascii() and value.isprintable():
        return value
    if any(unicodedata.category(ch).startswith("C") for ch in value):
        raise PydanticCustomError("control_characters", "control characters")
    return value


def _distinct(values: list) -> list:
    if len(set(values)) != len(values):
        raise PydanticCustomError("not_distinct", "not distinct")
    return values


def _text(max_length: int) -> Any:
    return Annotated[
        str,
        # Before the validators, so that the length is str's own check (string_too_long), not a generic one.
        Field(min_length=1, max_length=max_length),
        BeforeValidator(_not_blank),  # runs first: a blank value is refused before its length is looked at
        AfterValidator(_no_control_characters),
        Wording(
            "'{field}' must be a non-empty string",
            {
                "string_too_long": "'{field}' must be at most {max_length} characters",
                "control_characters": "'{field}' must not contain control characters",
                # a lone surrogate ("\ud800" in JSON), which pydantic refuses before our check: category Cs
                "string_unicode": "'{field}' must not contain control characters",
            },
        ),
    ]


def _count(minimum: int, maximum: int) -> Any:
    return Annotated[
        int,
        Field(ge=minimum, le=maximum),
        Wording(f"'{{field}}' must be an integer from {minimum} to {maximum}"),
    ]


def _list_of(item: Any, max_items: int, *rules: Any, **wording: str) -> Any:
    return Annotated[
        list[item],
        Field(min_length=1, max_length=max_items),
        *rules,
        Wording(
            "'{field}' must be a non-empty list",
            {"too_long": "'{field}' may hold at most {max_length} items", **wording},
        ),
    ]


def _starts_at(raw: Any) -> datetime:
    try:
        return parse_starts_at(raw)
    except InvalidRequest as refused:
        raise PydanticCustomError("starts_at", refused.message) from None


Name = _text(MAX_NAME_LENGTH)
UserId = _text(MAX_USER_ID_LENGTH)
SeatId = Annotated[int, Field(ge=1)]
StrategyName = Literal[STRATEGY_NAMES]
StartsAt = Annotated[
    datetime,
    PlainValidator(_starts_at),
    WithJsonSchema({"type": "string", "format": "date-time", "description": "ISO 8601 with a UTC offset"}),
    Wording("'starts_at' must be an ISO 8601 date-time string", {"starts_at": "{message}"}),
]


class Body(BaseModel):
    """A JSON object of the contract: unknown fields and other JSON types are refused, never coerced."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)
    # Its names in refusals: "<noun> has unknown field(s)", "<each> must be a JSON object" (in a list).
    noun: ClassVar[str]
    each: ClassVar[str] = "the request body"


class WaitingRoomSpec(Body):
    noun = "a waiting room"
    admit_per_second: Annotated[
        _count(1, MAX_ADMIT_PER_SECOND),
        Field(description="people admitted to booking per second, in the order they joined the queue"),
    ]


class NewPerformance(Body):
    noun, each = "a performance", "each performance"
    # strategy before starts_at: the order in which a refused performance's fields are reported.
    strategy: Annotated[
        StrategyName,
        Field(description="default: the deployment's DEFAULT_STRATEGY"),
        Wording(f"'strategy' must be one of {', '.join(STRATEGY_NAMES)}"),
    ] = None  # left out: the default strategy; an explicit null is refused
    starts_at: StartsAt
    waiting_room: Annotated[
        WaitingRoomSpec,
        Field(description="a waiting room in front of the performance's booking (docs/api.md#waiting-rooms)"),
        Wording(f"'waiting_room' must be an object with 'admit_per_second' (1 to {MAX_ADMIT_PER_SECOND})"),
    ] = None  # left out: no waiting room; an explicit null is refused


class NewSection(Body):
    noun, each = "a section", "each section"
    name: Name
    price: _count(0, MAX_PRICE)
    rows: _count(1, MAX_ROWS)
    seats_per_row: _count(1, MAX_SEATS_PER_ROW)


def _fits_one_performance(sections: list[NewSection]) -> list[NewSection]:
    if len({section.name for section in sections}) != len(sections):
        raise PydanticCustomError("not_distinct", "not distinct")
    total = sum(section.rows * section.seats_per_row for section in sections)
    if total > MAX_SEATS_PER_PERFORMANCE:
        raise PydanticCustomError("too_many_seats", "too many seats", {"total": total})
    return sections


class CreateEvent(Body):
    noun = "the event"
    name: Name
    venue: Name
    performances: _list_of(NewPerformance, MAX_PERFORMANCES)
    sections: _list_of(
        NewSection,
        MAX_SECTIONS,
        AfterValidator(_fits_one_performance),
        not_distinct="section names must be distinct",
        too_many_seats=f"a performance may have at most {MAX_SEATS_PER_PERFORMANCE} seats, not {{total}}",
    )


@cache
def booking_request_model(max_seats: int) -> type[Body]:
    """The booking body for a deployment's MAX_SEATS_PER_BOOKING (its schema shows the limit too)."""

    class BookingRequest(Body):
        noun = "the booking"
        # The signed-in user books; a user_id in the body must be theirs (403 otherwise).
        user_id: UserId = None
        seat_ids: Annotated[
            list[SeatId],
            Field(
                min_length=1,
                max_length=max_seats,
                json_schema_extra={"uniqueItems": True},
                description="these seats; or, instead, section_id and count (best available)",
            ),
            AfterValidator(_distinct),
            Wording(
                "'seat_ids' must be a non-empty list of seat ids",
                {
                    "too_long": "at most {max_length} seats per booking",
                    "not_distinct": "'seat_ids' must be distinct",
                },
                items="'seat_ids' must hold positive integers",
            ),
        ] = None
        section_id: Annotated[
            int,
            Field(ge=1, description="best available: `count` seats of this section, chosen by the service"),
            Wording("'section_id' must be a positive integer"),
        ] = None
        count: Annotated[
            int,
            Field(ge=1, le=max_seats, description="best available: how many seats of `section_id`"),
            Wording(f"'count' must be an integer from 1 to {max_seats}"),
        ] = None
        hold: Annotated[
            bool,
            Field(description="true: hold the seats for HOLD_SECONDS (HELD) instead of buying them"),
            Wording("'hold' must be true or false"),
        ] = False

    return BookingRequest


def _printable(value: str) -> str:
    if not value.isprintable():
        raise PydanticCustomError("control_characters", "control characters")
    return value


class ConfirmHold(Body):
    noun = "the confirmation"
    payment_reference: Annotated[
        str,
        Field(min_length=1, max_length=MAX_PAYMENT_REFERENCE_LENGTH),
        BeforeValidator(_not_blank),
        AfterValidator(_printable),
        Wording(
            f"'payment_reference' must be 1 to {MAX_PAYMENT_REFERENCE_LENGTH} printable characters",
        ),
    ]


def parse_confirm_body(body: Any) -> str:
    """-> the payment reference of a hold's confirmation."""
    return _validated(ConfirmHold, body).payment_reference


def _validated(model: type[Body], body: Any) -> Any:
    try:
        return model.model_validate(body)
    except ValidationError as invalid:
        raise _refusal(model, invalid.errors(include_url=False, include_input=False)) from None


def _refusal(model: type[Body], errors: list[ErrorDetails]) -> InvalidRequest:
    """The contract's one error for a refused body: its first problem in reading order."""
    first = errors[0]
    # pydantic reports an object's unknown fields after its fields; the contract names them first.
    for depth in range(len(first["loc"])):
        parent = first["loc"][:depth]
        unknown = sorted(
            str(e["loc"][-1]) for e in errors if e["type"] == "extra_forbidden" and e["loc"][:-1] == parent
        )
        if unknown:
            at, name, _ = _located(model, parent)
            noun = (at if name is None else at.model_fields[name].annotation).noun
            return InvalidRequest(f"{noun} has unknown field(s): {', '.join(unknown)}", fields=unknown)
    at, name, in_item = _located(model, first["loc"])
    if name is None:  # the object itself
        return InvalidRequest(f"{at.each} must be a JSON object")
    wording = next(m for m in at.model_fields[name].metadata if isinstance(m, Wording))
    return InvalidRequest(wording.message(name, first, in_item), field=name)


def _located(model: type[Body], loc: tuple[int | str, ...]) -> tuple[type[Body], str | None, bool]:
    """Where an error is: (the object, the field's name or None for the object itself, in a list item)."""
    at, name, in_item = model, None, False
    for part in loc:
        if isinstance(part, str):
            if name is not None:  # a field of the object the previous field holds
                at = at.model_fields[name].annotation
            name = part
            continue
        item = get_args(at.model_fields[name].annotation)[0]  # an index: into a list of these
        if isinstance(item, type) and issubclass(item, Body):
            at, name = item, None
        else:
            in_item = True
    return at, name, in_item


# --- the use cases' parsers --------------------------------------------------------------------------------
def parse_event_spec(body: Any, default_strategy: str) -> EventSpec:
    event = _validated(CreateEvent, body)
    return EventSpec(
        name=event.name,
        venue=event.venue,
        performances=tuple(
            PerformanceSpec(
                starts_at=p.starts_at,
                strategy=p.strategy or default_strategy,
                admit_per_second=p.waiting_room.admit_per_second if p.waiting_room else None,
            )
            for p in event.performances
        ),
        sections=tuple(
            SectionSpec(name=s.name, price=s.price, rows=s.rows, seats_per_row=s.seats_per_row)
            for s in event.sections
        ),
    )


@dataclass(frozen=True)
class BookingBody:
    user_id: str
    seat_ids: tuple[int, ...]  # sorted ascending: the order every strategy takes seats in; () best available
    hold: bool = False
    section_id: int | None = None  # best available: `count` seats of this section
    count: int | None = None


def _check_one_way_to_name_seats(booking: Any) -> None:
    """Exactly one of `seat_ids` and (`section_id` with `count`)."""
    by_seats = booking.seat_ids is not None
    by_section = booking.section_id is not None or booking.count is not None
    if not by_seats and not by_section:
        raise InvalidRequest("'seat_ids' must be a non-empty list of seat ids", field="seat_ids")
    if by_seats and by_section:
        raise InvalidRequest(
            "give either 'seat_ids' or 'section_id' and 'count' (best available), not both",
            field="section_id",
        )
    if by_section and booking.section_id is None:
        raise InvalidRequest("'section_id' is required with 'count'", field="section_id")
    if by_section and booking.count is None:
        raise InvalidRequest("'count' is required with 'section_id'", field="count")


def parse_booking_body(body: Any, max_seats: int, caller: str | None = None) -> BookingBody:
    """The booking asked for, as `caller` (the signed-in user; None: the body's user_id, for the use case's
    own callers such as the tests). A body's user_id that is not the caller's is 403."""
    booking = _validated(booking_request_model(max_seats), body)
    _check_one_way_to_name_seats(booking)
    if caller is not None and booking.user_id is not None and booking.user_id != caller:
        raise Forbidden(
            "'user_id' must be the signed-in user's (the token's sub) or left out", field="user_id"
        )
    user_id = caller if caller is not None else booking.user_id
    if user_id is None:
        raise InvalidRequest("'user_id' is required", field="user_id")
    seat_ids = tuple(sorted(booking.seat_ids)) if booking.seat_ids is not None else ()
    return BookingBody(user_id, seat_ids, booking.hold, booking.section_id, booking.count)


class DevToken(Body):
    noun = "the token request"
    user_id: UserId


def parse_dev_token_body(body: Any) -> str:
    """POST /dev/token's body -> the user id (as a booking body would take it)."""
    return _validated(DevToken, body).user_id
