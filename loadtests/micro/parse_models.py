"""Micro-benchmark, no server: the cost per call of parsing the hot path's request body and of a queue
message, by the hand parser this project had (commit 79bf51a, copied below as the baseline), by pydantic v2
(the models in chalicelib.domain) and by msgspec (equivalent Structs below). It decided the library (issue
14, item 3; docs/decisions.md): a booking request costs 0.3-1 ms of server CPU, so 5 % is 15-50 µs.

    .venv/bin/python -m loadtests.micro.parse_models [--seconds 0.2]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import timeit
import unicodedata
from collections.abc import Callable
from typing import Annotated, Any

import msgspec

from chalicelib.domain.errors import InvalidRequest
from chalicelib.domain.messages import BookingRequested, InvalidMessage
from chalicelib.domain.validation import parse_booking_body

MAX_SEATS = 4
VALID_BODY = b'{"user_id": "alice", "seat_ids": [7, 3, 5]}'
INVALID_BODY = b'{"user_id": "alice", "seat_ids": [7, 0, 5]}'  # a seat id below 1
VALID_MESSAGE = BookingRequested("01JD0000000000000000000000", 7, "alice", (3, 4), "redis_async").to_json()
INVALID_MESSAGE = VALID_MESSAGE.replace('"performance_id":7', '"performance_id":0')


# --- the baseline: the hand parsers as they were -----------------------------------------------------------
def hand_booking_body(body: Any, max_seats: int) -> tuple[str, tuple[int, ...]]:
    if not isinstance(body, dict):
        raise InvalidRequest("the request body must be a JSON object")
    unknown = sorted(set(body) - {"user_id", "seat_ids"})
    if unknown:
        raise InvalidRequest(f"the booking has unknown field(s): {', '.join(unknown)}", fields=unknown)
    user_id = body.get("user_id")
    if not isinstance(user_id, str) or not user_id.strip() or len(user_id) > 64:
        raise InvalidRequest("'user_id' must be a non-empty string", field="user_id")
    if any(unicodedata.category(ch).startswith("C") for ch in user_id):
        raise InvalidRequest("'user_id' must not contain control characters", field="user_id")
    seat_ids = body.get("seat_ids")
    if not isinstance(seat_ids, list) or not seat_ids or len(seat_ids) > max_seats:
        raise InvalidRequest("'seat_ids' must be a non-empty list of seat ids", field="seat_ids")
    if any(not isinstance(s, int) or isinstance(s, bool) or s < 1 for s in seat_ids):
        raise InvalidRequest("'seat_ids' must hold positive integers", field="seat_ids")
    if len(set(seat_ids)) != len(seat_ids):
        raise InvalidRequest("'seat_ids' must be distinct", field="seat_ids")
    return user_id, tuple(sorted(seat_ids))


def _positive_int(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"expected a positive integer, got {value!r}")
    return value


def _text(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"expected a non-empty string, got {value!r}")
    return value


def hand_message_round_trip(message: str) -> str:
    try:
        data = json.loads(message)
    except ValueError:
        raise InvalidMessage("body is not JSON") from None
    if not isinstance(data, dict) or not isinstance(data.get("booking_id"), str):
        raise InvalidMessage("no usable booking_id")
    try:
        seat_ids = data.get("seat_ids")
        if not isinstance(seat_ids, list) or not seat_ids:
            raise ValueError(f"expected a non-empty list, got {seat_ids!r}")
        fields = (
            data["booking_id"],
            _positive_int(data.get("performance_id")),
            _text(data.get("user_id")),
            tuple(_positive_int(s) for s in seat_ids),
            _text(data.get("strategy")),
        )
    except ValueError as exc:
        raise InvalidMessage(f"malformed field: {exc}", booking_id=data["booking_id"]) from None
    booking_id, performance_id, user_id, seats, strategy = fields
    return json.dumps(
        {
            "type": "booking.requested",
            "booking_id": booking_id,
            "performance_id": performance_id,
            "user_id": user_id,
            "seat_ids": list(seats),
            "strategy": strategy,
        },
        separators=(",", ":"),
    )


# --- msgspec: the same rules as Structs --------------------------------------------------------------------
class MsgspecBooking(msgspec.Struct, forbid_unknown_fields=True):
    user_id: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    seat_ids: Annotated[
        list[Annotated[int, msgspec.Meta(ge=1)]], msgspec.Meta(min_length=1, max_length=MAX_SEATS)
    ]

    def __post_init__(self) -> None:  # what Meta cannot say
        if not self.user_id.strip() or any(unicodedata.category(ch).startswith("C") for ch in self.user_id):
            raise ValueError("user_id")
        if len(set(self.seat_ids)) != len(self.seat_ids):
            raise ValueError("seat_ids")


class MsgspecBookingRequested(msgspec.Struct, tag_field="type", tag="booking.requested"):
    booking_id: Annotated[str, msgspec.Meta(min_length=1, max_length=40)]
    performance_id: Annotated[int, msgspec.Meta(ge=1)]
    user_id: Annotated[str, msgspec.Meta(min_length=1)]
    seat_ids: Annotated[tuple[Annotated[int, msgspec.Meta(ge=1)], ...], msgspec.Meta(min_length=1)]
    strategy: Annotated[str, msgspec.Meta(min_length=1)]


MSGSPEC_BOOKING = msgspec.json.Decoder(MsgspecBooking)
MSGSPEC_MESSAGE = msgspec.json.Decoder(MsgspecBookingRequested)


def msgspec_booking_from_dict(body: Any) -> tuple[str, tuple[int, ...]]:
    booking = msgspec.convert(body, MsgspecBooking)
    return booking.user_id, tuple(sorted(booking.seat_ids))


def msgspec_booking_from_bytes(raw: bytes) -> tuple[str, tuple[int, ...]]:
    booking = MSGSPEC_BOOKING.decode(raw)
    return booking.user_id, tuple(sorted(booking.seat_ids))


def pydantic_message_round_trip(message: str) -> str:
    return BookingRequested.from_json(message).to_json()


def msgspec_message_round_trip(message: str) -> bytes:
    return msgspec.json.encode(MSGSPEC_MESSAGE.decode(message))


# --- the measurement ---------------------------------------------------------------------------------------
REFUSALS = (InvalidRequest, InvalidMessage, msgspec.ValidationError, ValueError)


def per_call_us(call: Callable[[], object], seconds: float) -> float:
    """Microseconds per call: the best of 5 runs of about `seconds` each (refusals caught, as served)."""

    def once() -> None:
        with contextlib.suppress(*REFUSALS):
            call()

    timer = timeit.Timer(once)
    number, _ = timer.autorange()
    number = max(1, int(number * seconds / 0.2))
    return min(timer.repeat(repeat=5, number=number)) / number * 1e6


def cases() -> dict[str, dict[str, Callable[[bytes | str], Callable[[], object]]]]:
    """case -> library -> (input -> the call to time). Bodies from the dict include json.loads, as served."""
    return {
        "booking body (json.loads + parse)": {
            "hand": lambda raw: lambda: hand_booking_body(json.loads(raw), MAX_SEATS),
            "pydantic": lambda raw: lambda: parse_booking_body(json.loads(raw), MAX_SEATS),
            "msgspec": lambda raw: lambda: msgspec_booking_from_dict(json.loads(raw)),
        },
        "booking body (bytes -> model in one step)": {
            "pydantic": lambda raw: lambda: _pydantic_booking_from_bytes(raw),
            "msgspec": lambda raw: lambda: msgspec_booking_from_bytes(raw),
        },
        "BookingRequested decode + encode": {
            "hand": lambda body: lambda: hand_message_round_trip(body),
            "pydantic": lambda body: lambda: pydantic_message_round_trip(body),
            "msgspec": lambda body: lambda: msgspec_message_round_trip(body),
        },
    }


def _pydantic_booking_from_bytes(raw: bytes) -> tuple[str, tuple[int, ...]]:
    from chalicelib.domain.validation import booking_request_model

    booking = booking_request_model(MAX_SEATS).model_validate_json(raw)
    return booking.user_id, tuple(sorted(booking.seat_ids))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=0.2, help="length of each of the 5 timed runs")
    args = parser.parse_args()
    inputs = {
        "booking body (json.loads + parse)": (VALID_BODY, INVALID_BODY),
        "booking body (bytes -> model in one step)": (VALID_BODY, INVALID_BODY),
        "BookingRequested decode + encode": (VALID_MESSAGE, INVALID_MESSAGE),
    }
    alone = per_call_us(lambda: json.loads(VALID_BODY), args.seconds)
    print(f"json.loads of the booking body alone: {alone:.2f} µs")
    print("\n| case | library | valid (µs) | invalid (µs) |\n|---|---|---:|---:|")
    for case, libraries in cases().items():
        valid, invalid = inputs[case]
        for library, call_for in libraries.items():
            good, bad = (
                per_call_us(call_for(valid), args.seconds),
                per_call_us(call_for(invalid), args.seconds),
            )
            print(f"| {case} | {library} | {good:.2f} | {bad:.2f} |")


if __name__ == "__main__":
    main()
