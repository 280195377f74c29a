"""The response bodies of the HTTP contract (docs/api.md) as pydantic models: the OpenAPI document's schemas.

The services build these bodies as plain dicts (the seat map is the hottest read there is); these models only
describe them, and the e2e tests validate every live answer against the schemas generated from them."""

from functools import cache
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from chalicelib.domain import errors
from chalicelib.domain.models import BookingStatus, SeatStatus
from chalicelib.domain.validation import MAX_USER_ID_LENGTH, StrategyName

# Codes raised by the domain, plus those the HTTP edge itself produces.
EDGE_ERROR_CODES = ("METHOD_NOT_ALLOWED", "UNSUPPORTED_MEDIA_TYPE", "PAYLOAD_TOO_LARGE", "INTERNAL_ERROR")
ERROR_CODES = tuple(
    sorted(
        {
            cls.code
            for cls in vars(errors).values()
            if isinstance(cls, type) and issubclass(cls, errors.BookingError)
        }
        | set(EDGE_ERROR_CODES)
    )
)

Id = Annotated[int, Field(ge=1)]


class Answer(BaseModel):
    """A JSON object the service answers with: exactly these fields, all of them present."""

    model_config = ConfigDict(extra="forbid")


class ErrorDetail(BaseModel):
    model_config = ConfigDict(extra="allow")  # more detail may come (docs/api.md: `...extra`)

    code: Literal[ERROR_CODES]
    message: str
    seat_ids: list[int] = Field(None, description="SEAT_UNAVAILABLE: the seats already taken")
    field: str = Field(None, description="INVALID_REQUEST: the offending field")


class Error(Answer):
    error: ErrorDetail


class HealthChecks(Answer):
    db: str = Field(description="ok, or why not")
    redis: str = Field(description="ok, or why not")
    queue: str = Field(description="ok, or why not")


class Health(Answer):
    status: Literal["ok", "degraded"]
    checks: HealthChecks


class Pong(Answer):
    status: Literal["ok"]


class Token(Answer):
    token: str = Field(description="a JWT: send it as `Authorization: Bearer <token>`")
    expires_at: int = Field(description="when it stops being accepted (epoch seconds, the token's exp)")


class QueueTicket(Answer):
    ticket: str = Field(description="the user's ticket of this performance's waiting room")
    performance_id: Id
    position: int = Field(
        ge=0, description="people admitted before this ticket's turn, itself included; 0: admitted"
    )
    serving: int = Field(ge=0, description="the serving number: tickets up to it are admitted")
    eta_seconds: float = Field(ge=0, description="estimated wait until admission (0: admitted)")
    admission_token: str | None = Field(
        description="once admitted: the JWT (aud: the performance, sub: the user) to send as "
        "X-Admission-Token"
    )
    admission_expires_at: int | None = Field(description="the admission token's exp (epoch seconds)")


class Section(Answer):
    section_id: Id
    name: str
    price: int
    seat_count: int
    first_seat_id: Id
    last_seat_id: Id


class WaitingRoom(Answer):
    admit_per_second: Id = Field(description="people admitted to booking per second, in join order")


class Performance(Answer):
    performance_id: Id
    starts_at: str
    strategy: StrategyName
    sections: list[Section]
    waiting_room: WaitingRoom | None = Field(description="null: no waiting room; booking is open to all")


class Event(Answer):
    event_id: Id
    name: str
    venue: str
    performances: list[Performance]


class EventSummary(Answer):
    event_id: Id
    name: str
    venue: str


class EventList(Answer):
    events: list[EventSummary]
    next_cursor: str | None = Field(description="pass as ?cursor= for the next page")


class Seat(Answer):
    seat_id: Id
    row: int
    number: int
    status: Literal[tuple(SeatStatus)]


class SeatMapSection(Answer):
    section_id: Id
    name: str
    price: int
    available: int = Field(ge=0)
    seats: list[Seat]


class SeatMap(Answer):
    performance_id: Id
    strategy: StrategyName
    version: int = Field(description="grows with every seat change of the performance")
    sections: list[SeatMapSection]


class CompactSeatMapSection(Answer):
    section_id: Id
    name: str
    price: int
    rows: int = Field(ge=1)
    seats_per_row: int = Field(ge=1)
    first_seat_id: Id
    status: str = Field(
        pattern="^[AHB]*$",
        description="one letter per seat in seat-id order (row by row, from first_seat_id): "
        "A available, H held, B booked",
    )


class CompactSeatMap(Answer):
    """The seat map's `?view=compact`: a 5,000-seat map in a few KB."""

    performance_id: Id
    strategy: StrategyName
    version: int = Field(description="grows with every seat change of the performance")
    sections: list[CompactSeatMapSection]


class SeatChange(Answer):
    seat_id: Id
    status: Literal[tuple(SeatStatus)] = Field(description="the seat's status at the delta's version")


class SeatMapChanges(Answer):
    """The seat map's `?since=<version>`: the seats whose status changed after that version."""

    performance_id: Id
    version: int = Field(description="the map's version now: the next poll's `since`")
    changes: list[SeatChange] = Field(description="sorted by seat id; a seat that changed back may be named")


@cache
def booking_model(max_seats: int) -> type[Answer]:
    """A booking as answered, for a deployment's MAX_SEATS_PER_BOOKING."""

    class Booking(Answer):
        booking_id: str = Field(min_length=1)
        performance_id: Id
        user_id: str = Field(min_length=1, max_length=MAX_USER_ID_LENGTH)
        seat_ids: list[Id] = Field(
            min_length=0,
            max_length=max_seats,
            description="the seats; empty only for a best available request still waiting in line "
            "(fifo_partition, stream_state) or refused at its turn",
        )
        status: Literal[tuple(BookingStatus)]
        strategy: StrategyName
        reason: str | None = Field(description="why a booking is REJECTED, FAILED, CANCELLED or EXPIRED")
        expires_at: str | None = Field(
            description='a hold ("hold": true): when its seats go back to the crowd unless it is confirmed '
            "(RFC 3339, UTC); null for a purchase",
            json_schema_extra={"format": "date-time"},
        )
        extensions: int = Field(ge=0, description="how often the hold was extended (0 for a purchase)")
        payment_reference: str | None = Field(description="what confirmed the hold; null otherwise")

    return Booking
