from __future__ import annotations

import pytest

from chalicelib.domain.errors import InvalidRequest, NotFound
from chalicelib.domain.validation import (
    BookingBody,
    parse_booking_body,
    parse_event_spec,
    parse_idempotency_key,
    parse_path_id,
)

GOOD_EVENT = {
    "name": "Les Misérables",
    "venue": "Blue Square",
    "performances": [{"starts_at": "2026-12-24T19:30:00+09:00", "strategy": "redis_async"}],
    "sections": [{"name": "VIP", "price": 170000, "rows": 10, "seats_per_row": 20}],
}


def test_event_spec_parses_the_contract_example() -> None:
    spec = parse_event_spec(GOOD_EVENT, "db_lock")
    assert spec.name == "Les Misérables"
    assert spec.performances[0].strategy == "redis_async"
    assert spec.performances[0].starts_at.utcoffset().total_seconds() == 9 * 3600
    assert spec.sections[0].seat_count == 200


def test_event_strategy_defaults_from_config() -> None:
    body = {**GOOD_EVENT, "performances": [{"starts_at": "2026-12-24T19:30:00Z"}]}
    assert parse_event_spec(body, "db_lock").performances[0].strategy == "db_lock"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"name": ""}, "name"),
        ({"name": 5}, "name"),
        ({"venue": "x" * 201}, "venue"),
        ({"performances": []}, "performances"),
        ({"performances": [{"starts_at": "tomorrow"}]}, "starts_at"),
        ({"performances": [{"starts_at": "2026-12-24T19:30:00"}]}, "starts_at"),  # no offset
        ({"performances": [{"starts_at": "2026-12-24T19:30:00Z", "strategy": "magic"}]}, "strategy"),
        ({"sections": [{"name": "A", "price": -1, "rows": 1, "seats_per_row": 1}]}, "price"),
        ({"sections": [{"name": "A", "price": 1, "rows": 0, "seats_per_row": 1}]}, "rows"),
        ({"sections": [{"name": "A", "price": 1, "rows": True, "seats_per_row": 1}]}, "rows"),
        ({"sections": [{"name": "A", "price": 1, "rows": 1, "seats_per_row": 1.5}]}, "seats_per_row"),
        ({"sections": [{"name": "A\x00", "price": 1, "rows": 1, "seats_per_row": 1}]}, "name"),
    ],
)
def test_event_spec_rejects_bad_fields(change: dict, field: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        parse_event_spec({**GOOD_EVENT, **change}, "redis_async")
    assert info.value.extra.get("field") == field


def test_event_spec_rejects_duplicate_section_names_and_oversized_venues() -> None:
    two = [{"name": "A", "price": 1, "rows": 1, "seats_per_row": 1}] * 2
    with pytest.raises(InvalidRequest, match="distinct"):
        parse_event_spec({**GOOD_EVENT, "sections": two}, "redis_async")
    huge = [{"name": f"S{i}", "price": 1, "rows": 500, "seats_per_row": 500} for i in range(2)]
    with pytest.raises(InvalidRequest, match="at most"):
        parse_event_spec({**GOOD_EVENT, "sections": huge}, "redis_async")


def test_event_spec_rejects_unknown_fields_and_non_objects() -> None:
    with pytest.raises(InvalidRequest, match="unknown field"):
        parse_event_spec({**GOOD_EVENT, "colour": "red"}, "redis_async")
    with pytest.raises(InvalidRequest, match="JSON object"):
        parse_event_spec([GOOD_EVENT], "redis_async")


def test_booking_body_sorts_seats_into_the_fixed_order() -> None:
    assert parse_booking_body({"user_id": "alice", "seat_ids": [7, 3, 5]}, 4) == BookingBody(
        "alice", (3, 5, 7)
    )
    assert parse_booking_body({"user_id": "a", "seat_ids": [1], "hold": True}, 4).hold is True


@pytest.mark.parametrize(
    "body",
    [
        None,
        [],
        {"seat_ids": [1]},  # no user_id, and no signed-in caller either
        {"user_id": "", "seat_ids": [1]},
        {"user_id": "u" * 65, "seat_ids": [1]},
        {"user_id": "bad\u202e", "seat_ids": [1]},  # a format character (right-to-left override)
        {"user_id": "bad\n", "seat_ids": [1]},
        {"user_id": "u", "seat_ids": []},
        {"user_id": "u", "seat_ids": [1, 1]},
        {"user_id": "u", "seat_ids": [0]},
        {"user_id": "u", "seat_ids": [-3]},
        {"user_id": "u", "seat_ids": ["1"]},
        {"user_id": "u", "seat_ids": [True]},
        {"user_id": "u", "seat_ids": [1, 2, 3, 4, 5]},
        {"user_id": "u", "seat_ids": 1},
        {"user_id": "u", "seat_ids": [1], "extra": 1},
    ],
)
def test_booking_body_rejects_malformed_input(body: object) -> None:
    with pytest.raises(InvalidRequest):
        parse_booking_body(body, 4)


def test_booking_body_accepts_unicode_names() -> None:
    assert parse_booking_body({"user_id": "김민지 🎭", "seat_ids": [1]}, 4).user_id == "김민지 🎭"


@pytest.mark.parametrize("key", ["", "x" * 129, "tab\there", "ключ"])
def test_idempotency_key_rules(key: str) -> None:
    with pytest.raises(InvalidRequest):
        parse_idempotency_key(key)


def test_idempotency_key_accepts_printable_ascii() -> None:
    assert parse_idempotency_key("order-42 retry#1") == "order-42 retry#1"
    assert parse_idempotency_key(None) is None


@pytest.mark.parametrize("raw", ["0", "-1", "abc", "1.5", "٣", "9" * 19])
def test_path_ids_that_cannot_exist_are_not_found(raw: str) -> None:
    with pytest.raises(NotFound):
        parse_path_id(raw, "performance")


def test_path_id_parses() -> None:
    assert parse_path_id("42", "performance") == 42


# --- the contract's exact wording of each refusal (clients read `message`, `field` and `fields`) ----------
BOOKING = {"user_id": "ann", "seat_ids": [1]}
SECTION = GOOD_EVENT["sections"][0]


@pytest.mark.parametrize(
    ("body", "message", "extra"),
    [
        ([1], "the request body must be a JSON object", {}),
        ({**BOOKING, "b": 1, "a": 2}, "the booking has unknown field(s): a, b", {"fields": ["a", "b"]}),
        ({"seat_ids": [1]}, "'user_id' is required", {"field": "user_id"}),
        ({**BOOKING, "user_id": " \t"}, "'user_id' must be a non-empty string", {"field": "user_id"}),
        ({**BOOKING, "user_id": "u" * 65}, "'user_id' must be at most 64 characters", {"field": "user_id"}),
        (
            {**BOOKING, "user_id": "a\x07"},
            "'user_id' must not contain control characters",
            {"field": "user_id"},
        ),
        (
            {**BOOKING, "user_id": "a\ud800"},
            "'user_id' must not contain control characters",
            {"field": "user_id"},
        ),
        ({"user_id": "u"}, "'seat_ids' must be a non-empty list of seat ids", {"field": "seat_ids"}),
        (
            {**BOOKING, "seat_ids": []},
            "'seat_ids' must be a non-empty list of seat ids",
            {"field": "seat_ids"},
        ),
        ({**BOOKING, "seat_ids": [1, 2, 3, 4, "x"]}, "at most 4 seats per booking", {"field": "seat_ids"}),
        ({**BOOKING, "seat_ids": [2, 1.0]}, "'seat_ids' must hold positive integers", {"field": "seat_ids"}),
        ({**BOOKING, "seat_ids": [2, 2]}, "'seat_ids' must be distinct", {"field": "seat_ids"}),
        # the first problem in reading order: unknown fields, then user_id, then seat_ids
        ({"user_id": "", "seat_ids": [0], "x": 1}, "the booking has unknown field(s): x", {"fields": ["x"]}),
        ({"user_id": "", "seat_ids": [0]}, "'user_id' must be a non-empty string", {"field": "user_id"}),
    ],
)
def test_booking_refusals_keep_their_wording(body: object, message: str, extra: dict) -> None:
    with pytest.raises(InvalidRequest) as info:
        parse_booking_body(body, 4)
    assert (info.value.message, info.value.extra) == (message, extra)


@pytest.mark.parametrize(
    ("change", "message", "extra"),
    [
        ({"performances": [1]}, "each performance must be a JSON object", {}),
        ({"sections": [SECTION, "A"]}, "each section must be a JSON object", {}),
        (
            {"performances": [{"starts_at": "x", "strategy": "magic", "z": 1}]},
            "a performance has unknown field(s): z",
            {"fields": ["z"]},
        ),
        (
            {"performances": [{"starts_at": "x", "strategy": None}]},
            "'strategy' must be one of db_lock, redis_lock, redis_async, fifo_partition, stream_state",
            {"field": "strategy"},
        ),
        (
            {"performances": [{"starts_at": "2026-12-24T19:30:00"}]},
            "'starts_at' must carry a UTC offset, e.g. +09:00 or Z",
            {"field": "starts_at"},
        ),
        ({"performances": [{}]}, "'starts_at' must be an ISO 8601 date-time string", {"field": "starts_at"}),
        (
            {"performances": [{"starts_at": "2026-12-24T19:30:00Z"}] * 51},
            "'performances' may hold at most 50 items",
            {"field": "performances"},
        ),
        ({"sections": "all"}, "'sections' must be a non-empty list", {"field": "sections"}),
        (
            {"sections": [{**SECTION, "price": 10**12 + 1}]},
            "'price' must be an integer from 0 to 1000000000000",
            {"field": "price"},
        ),
        (
            {"sections": [{**SECTION, "rows": "2"}]},
            "'rows' must be an integer from 1 to 500",
            {"field": "rows"},
        ),
        ({"sections": [SECTION, SECTION]}, "section names must be distinct", {"field": "sections"}),
        (
            {"sections": [{**SECTION, "name": f"S{i}", "rows": 500, "seats_per_row": 500} for i in range(2)]},
            "a performance may have at most 50000 seats, not 500000",
            {"field": "sections"},
        ),
        (
            {"name": "x" * 201, "colour": "red"},
            "the event has unknown field(s): colour",
            {"fields": ["colour"]},
        ),
    ],
)
def test_event_refusals_keep_their_wording(change: dict, message: str, extra: dict) -> None:
    with pytest.raises(InvalidRequest) as info:
        parse_event_spec({**GOOD_EVENT, **change}, "db_lock")
    assert (info.value.message, info.value.extra) == (message, extra)


def test_the_seat_limit_is_the_deployments() -> None:
    assert parse_booking_body({"user_id": "u", "seat_ids": [6, 5, 4, 3, 2, 1]}, 6).seat_ids == (
        1,
        2,
        3,
        4,
        5,
        6,
    )
    with pytest.raises(InvalidRequest, match="at most 2 seats per booking"):
        parse_booking_body({"user_id": "u", "seat_ids": [1, 2, 3]}, 2)


@pytest.mark.parametrize(
    ("body", "message", "field"),
    [
        ({"user_id": "u", "seat_ids": [1], "section_id": 2, "count": 1}, "not both", "section_id"),
        ({"user_id": "u", "section_id": 2}, "'count' is required with 'section_id'", "count"),
        ({"user_id": "u", "count": 2}, "'section_id' is required with 'count'", "section_id"),
        ({"user_id": "u", "section_id": 2, "count": 5}, "'count' must be an integer from 1 to 4", "count"),
        (
            {"user_id": "u", "section_id": 0, "count": 1},
            "'section_id' must be a positive integer",
            "section_id",
        ),
        ({"user_id": "u", "seat_ids": [1], "hold": "yes"}, "'hold' must be true or false", "hold"),
    ],
)
def test_a_booking_names_its_seats_one_way_only(body: dict, message: str, field: str) -> None:
    with pytest.raises(InvalidRequest, match=message) as refused:
        parse_booking_body(body, 4)
    assert refused.value.extra["field"] == field


def test_the_best_available_is_a_section_and_a_count() -> None:
    wanted = parse_booking_body({"user_id": "u", "section_id": 2, "count": 3, "hold": True}, 4)
    assert wanted == BookingBody("u", (), True, 2, 3)
