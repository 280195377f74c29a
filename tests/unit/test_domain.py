from __future__ import annotations

import json

import pytest

from chalicelib.config import Settings
from chalicelib.domain.messages import BookingRequested, InvalidMessage
from chalicelib.domain.models import Booking, BookingStatus, Section


def test_section_positions_run_row_by_row() -> None:
    section = Section(
        section_id=1, performance_id=1, name="A", price=1, rows=3, seats_per_row=4, first_seat_id=101
    )
    assert section.last_seat_id == 112
    assert section.position_of(101) == (1, 1)
    assert section.position_of(104) == (1, 4)
    assert section.position_of(105) == (2, 1)
    assert section.position_of(112) == (3, 4)
    assert section.contains(112) and not section.contains(113) and not section.contains(100)


def test_only_pending_held_and_confirmed_hold_seats() -> None:
    holding = {BookingStatus.PENDING, BookingStatus.HELD, BookingStatus.CONFIRMED}
    assert {s for s in BookingStatus if s.holds_seats} == holding
    assert {s for s in BookingStatus if not s.is_final} == {BookingStatus.PENDING}
    assert {s for s in BookingStatus if s.may_lapse} == {BookingStatus.PENDING, BookingStatus.HELD}


def test_a_hold_reads_expired_from_its_deadline_on_whatever_the_store_says() -> None:
    hold = Booking("b1", 1, "ann", (1, 2), BookingStatus.HELD, "db_lock", expires_at=1_000.0)
    assert hold.as_of(999.999) is hold
    assert hold.as_of(1_000.0).status is BookingStatus.EXPIRED
    assert hold.to_dict()["expires_at"] == "1970-01-01T00:16:40.000Z"
    confirmed = Booking("b1", 1, "ann", (1,), BookingStatus.CONFIRMED, "db_lock", expires_at=1_000.0)
    assert confirmed.as_of(2_000.0) is confirmed, "a confirmed hold never lapses"
    purchase = Booking("b2", 1, "ann", (1,), BookingStatus.PENDING, "redis_async")
    assert purchase.as_of(10**12) is purchase


def test_backoff_doubles_per_receive_and_is_capped() -> None:
    settings = Settings(backoff_base_seconds=1, backoff_max_seconds=20)
    assert [settings.backoff_seconds(n) for n in range(1, 7)] == [1, 2, 4, 8, 16, 20]


def test_the_shipped_retry_policy_outlasts_a_database_failover() -> None:
    shipped = Settings()
    backoffs = [shipped.backoff_seconds(n) for n in range(1, shipped.max_receive_count)]
    assert backoffs == [2, 4, 8, 16, 32, 60, 60]
    # Every delivery may fail at once (MySQL's circuit open): the backoffs alone must span an RDS failover.
    assert sum(backoffs) >= 180
    assert shipped.queue_retry_window_seconds() + 60 <= shipped.pending_hold_deadline_seconds


def test_settings_reject_an_unknown_default_strategy() -> None:
    with pytest.raises(ValueError, match="DEFAULT_STRATEGY"):
        Settings.from_env({"DEFAULT_STRATEGY": "optimism"})


def test_settings_read_the_environment() -> None:
    settings = Settings.from_env({"MAX_SEATS_PER_BOOKING": "6", "AWS_ENDPOINT_URL": "", "STAGE": "prod"})
    assert settings.max_seats_per_booking == 6
    assert settings.aws_endpoint_url is None
    assert settings.stage == "prod"


def test_booking_message_round_trips() -> None:
    message = BookingRequested("01ABC", 7, "alice", (3, 4), "redis_async")
    assert BookingRequested.from_json(message.to_json()) == message
    assert json.loads(message.to_json())["type"] == "booking.requested"


@pytest.mark.parametrize(
    ("body", "booking_id"),
    [
        ("not json", None),
        ("[1]", None),
        ('{"performance_id": 1}', None),
        (
            '{"booking_id": "B1", "performance_id": 1, "user_id": "u", "seat_ids": "oops", "strategy": "x"}',
            "B1",
        ),
        ('{"booking_id": "B2", "performance_id": 0, "user_id": "u", "seat_ids": [1], "strategy": "x"}', "B2"),
    ],
)
def test_poison_messages_are_recognised(body: str, booking_id: str | None) -> None:
    with pytest.raises(InvalidMessage) as info:
        BookingRequested.from_json(body)
    assert info.value.booking_id == booking_id
