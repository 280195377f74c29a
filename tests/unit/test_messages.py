"""Queue and stream messages: the wire format stays byte for byte what it was (messages already in queues and
streams must parse, and a resent one must read the same), and a poison message is recognised with the reason
that is kept with its booking."""

from __future__ import annotations

import pytest

from chalicelib.domain.messages import (
    BookingRequested,
    InvalidMessage,
    LedgerEntry,
    LedgerOutcome,
    SeatsReleaseRequested,
    parse_stream_command,
)

REQUESTED = BookingRequested("01JD0000000000000000000000", 7, "김민지 🎭", (3, 4), "redis_async")
RELEASE = SeatsReleaseRequested("b1", 7, "ann", (1, 2), ((2, "b7"),))
DECIDED = LedgerEntry("b1", 7, "ann", (1, 2), LedgerOutcome.REJECTED, "seat taken", ((2, "b7"),))
# As the hand-written encoders wrote them (json.dumps, compact, non-ASCII escaped).
WIRE = {
    REQUESTED: '{"type":"booking.requested","booking_id":"01JD0000000000000000000000","performance_id":7,'
    '"user_id":"\\uae40\\ubbfc\\uc9c0 \\ud83c\\udfad","seat_ids":[3,4],"strategy":"redis_async"}',
    RELEASE: '{"type":"booking.release","booking_id":"b1","performance_id":7,"user_id":"ann",'
    '"seat_ids":[1,2],"holders":[[2,"b7"]]}',
    DECIDED: '{"type":"booking.decided","booking_id":"b1","performance_id":7,"user_id":"ann",'
    '"seat_ids":[1,2],"outcome":"REJECTED","reason":"seat taken","holders":[[2,"b7"]]}',
}


@pytest.mark.parametrize("message", list(WIRE), ids=["requested", "release", "decided"])
def test_the_wire_format_is_byte_for_byte_the_old_one(message) -> None:
    assert message.to_json() == WIRE[message]


def test_messages_on_the_wire_read_back_as_they_were_sent() -> None:
    assert BookingRequested.from_json(WIRE[REQUESTED]) == REQUESTED
    assert parse_stream_command(WIRE[REQUESTED]) == REQUESTED
    assert parse_stream_command(WIRE[RELEASE]) == RELEASE
    assert LedgerEntry.from_json(WIRE[DECIDED]) == DECIDED
    confirmed = LedgerEntry("b2", 7, "ann", (5,), LedgerOutcome.CONFIRMED)
    assert LedgerEntry.from_json(confirmed.to_json()) == confirmed
    # Written with spaces (json.dumps' default) and holders left out: the same release.
    spaced = (
        '{"type": "booking.release", "booking_id": "b1", "performance_id": 7, "user_id": "u", "seat_ids": [1]'
    )
    spaced += "}"
    assert parse_stream_command(spaced) == SeatsReleaseRequested("b1", 7, "u", (1,))


@pytest.mark.parametrize(
    ("body", "reason", "booking_id"),
    [
        ("{oops", "body is not JSON", None),
        ("[1]", "body is not a JSON object", None),
        ('{"booking_id": "' + "B" * 41 + '"}', "no usable booking_id", None),
        (
            '{"booking_id": "B1", "user_id": "u", "seat_ids": [1], "strategy": "x"}',
            "malformed field: expected a positive integer, got None",
            "B1",
        ),
        (
            '{"booking_id": "B1", "performance_id": true, "user_id": "u", "seat_ids": [1], "strategy": "x"}',
            "malformed field: expected a positive integer, got True",
            "B1",
        ),
        (
            '{"booking_id": "B1", "performance_id": 1, "user_id": "", "seat_ids": [1], "strategy": "x"}',
            "malformed field: expected a non-empty string, got ''",
            "B1",
        ),
        (
            '{"booking_id": "B1", "performance_id": 1, "user_id": "u", "seat_ids": [], "strategy": "x"}',
            "malformed field: expected a non-empty list, got []",
            "B1",
        ),
        (
            '{"booking_id": "B1", "performance_id": 1, "user_id": "u", "seat_ids": [1, "2"], "strategy": ""}',
            "malformed field: expected a positive integer, got '2'",
            "B1",
        ),
    ],
)
def test_poison_requests_keep_their_reasons(body: str, reason: str, booking_id: str | None) -> None:
    with pytest.raises(InvalidMessage) as info:
        BookingRequested.from_json(body)
    assert (str(info.value), info.value.booking_id) == (reason, booking_id)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (
            '{"type": "booking.release", "booking_id": "b1"}',
            "malformed release: expected a positive integer, got None",
        ),
        (
            '{"type": "booking.release", "booking_id": "b1", "performance_id": 1, "user_id": "u", '
            '"seat_ids": [1], "holders": [[1]]}',
            "malformed release: holders must be a list of [seat, booking] pairs",
        ),
    ],
)
def test_poison_releases_keep_their_reasons(body: str, reason: str) -> None:
    with pytest.raises(InvalidMessage) as info:
        parse_stream_command(body)
    assert str(info.value) == reason


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ('{"type": "booking.decided", "outcome": "MAYBE"}', "not a ledger entry"),
        ('{"type": "booking.release", "outcome": "CONFIRMED"}', "not a ledger entry"),
        (
            '{"type": "booking.decided", "outcome": "CONFIRMED", "booking_id": "b"}',
            "malformed ledger entry: expected a positive integer, got None",
        ),
    ],
)
def test_poison_ledger_entries_are_recognised(body: str, reason: str) -> None:
    with pytest.raises(InvalidMessage) as info:
        LedgerEntry.from_json(body)
    assert str(info.value) == reason
