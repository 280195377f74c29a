"""The consumer of booking messages (services/booking_events.py) and its SQS batch handler
(entrypoints/sqs_batch.py) with no server: settle by compare-and-set, retry, give up, poison messages,
partial batch failures and a FIFO group's order within a batch."""

from __future__ import annotations

import pytest

from chalicelib.config import Settings
from chalicelib.domain.models import BookingStatus
from chalicelib.entrypoints.sqs_batch import BookingBatchHandler
from chalicelib.services.booking_events import PermanentFailure, TransientFailure
from tests.support.offline import MAX_RECEIVE_COUNT, Offline

CONFIRMED, PENDING, FAILED = BookingStatus.CONFIRMED, BookingStatus.PENDING, BookingStatus.FAILED


def book(system: Offline, strategy: str = "redis_async", user: str = "ann", seat_index: int = 0):
    performance = system.new_performance(strategy)
    seat = performance.seat_ids[seat_index]
    return performance, system.booking_service.book(
        performance.performance_id, {"user_id": user, "seat_ids": [seat]}, None
    )


def test_a_message_confirms_its_booking_and_a_redelivery_changes_nothing(system: Offline) -> None:
    _, booking = book(system)
    assert system.deliver(system.booking_queue) is CONFIRMED
    assert system.deliver(system.booking_queue, receive_count=2) is CONFIRMED
    assert system.bookings.get(booking.booking_id).status is CONFIRMED
    assert system.bookings.actions(booking.booking_id) == []


def test_mysql_away_is_retried_until_the_last_delivery(system: Offline) -> None:
    performance, booking = book(system)
    system.bookings.outage.down()
    for receive_count in range(1, MAX_RECEIVE_COUNT):
        with pytest.raises(TransientFailure):
            system.deliver(system.booking_queue, receive_count)
    system.bookings.outage.up()
    assert system.bookings.get(booking.booking_id).status is PENDING  # its seat held all along
    assert system.seat_states(performance)[booking.seat_ids[0]] == f"H:{booking.booking_id}"
    assert system.deliver(system.booking_queue, MAX_RECEIVE_COUNT) is CONFIRMED


def test_the_last_delivery_that_fails_gives_the_booking_up(system: Offline, monkeypatch) -> None:
    performance, booking = book(system)
    seat = booking.seat_ids[0]

    def bug(message):  # a bug a deploy would fix, still there at the last delivery
        raise RuntimeError("boom")

    monkeypatch.setattr(system.strategies["redis_async"], "finish", bug)
    with pytest.raises(PermanentFailure, match="gave up after 3 attempts: RuntimeError: boom"):
        system.deliver(system.booking_queue, MAX_RECEIVE_COUNT)
    assert system.bookings.get(booking.booking_id).status is FAILED
    assert system.seat_states(performance)[seat] == "0"
    assert system.seat_store.read_booking(booking.booking_id).status is FAILED
    assert system.bookings.actions(booking.booking_id) == ["booking_failed"]


def test_a_poison_message_naming_a_booking_fails_it_and_is_logged(system: Offline) -> None:
    performance, booking = book(system)
    body = f'{{"type": "booking.requested", "booking_id": "{booking.booking_id}", "seat_ids": "nonsense"}}'
    with pytest.raises(PermanentFailure):
        system.consumer.handle(body, 1, "m-1")
    assert system.bookings.get(booking.booking_id).status is FAILED
    assert system.seat_states(performance)[booking.seat_ids[0]] == "0"
    assert system.bookings.actions(booking.booking_id) == ["booking_failed", "poison_message"]


def test_a_message_for_no_asynchronous_strategy_is_poison(system: Offline) -> None:
    with pytest.raises(PermanentFailure):
        system.consumer.handle("not json", 1, "m-2")
    assert [e.action for e in system.bookings.reconcile_log.values()] == ["poison_message"]


# --- the batch handler ----------------------------------------------------------------------------------
class VisibilityLog:
    """The queue side the batch handler uses: when each message becomes visible again."""

    def __init__(self) -> None:
        self.visible_after: dict[str, int] = {}

    def retry_after(self, receipt_handle: str, seconds: int) -> None:
        self.visible_after[receipt_handle] = seconds


def sqs_event(*messages: tuple[str, str, int, str | None]) -> dict:
    """(message id, body, receive count, FIFO group or None) -> the event Lambda hands the handler."""
    records = []
    for message_id, body, receive_count, group in messages:
        attributes = {"ApproximateReceiveCount": str(receive_count)}
        if group is not None:
            attributes["MessageGroupId"] = group
        records.append(
            {
                "messageId": message_id,
                "receiptHandle": f"receipt-{message_id}",
                "body": body,
                "attributes": attributes,
                "messageAttributes": {},
                "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:us-east-1:000000000000:queue",
            }
        )
    return {"Records": records}


@pytest.fixture()
def settings() -> Settings:
    return Settings(max_receive_count=MAX_RECEIVE_COUNT, backoff_base_seconds=2, backoff_max_seconds=60)


def failures(response: dict) -> list[str]:
    return [item["itemIdentifier"] for item in response["batchItemFailures"]]


def test_only_the_failed_message_of_a_batch_is_retried_after_a_backoff(system: Offline, settings) -> None:
    _, good = book(system)
    visibility = VisibilityLog()
    handler = BookingBatchHandler(system.consumer, visibility, settings)
    _, stuck = book(system, user="bob")
    system.bookings.outage.down("settle")  # MySQL cannot settle: the message backs off
    response = handler(sqs_event(("a", system.booking_queue.bodies()[1], 2, None)), None)
    assert failures(response) == ["a"]
    assert visibility.visible_after == {"receipt-a": settings.backoff_seconds(2)}
    system.bookings.outage.up()
    response = handler(
        sqs_event(
            ("b", system.booking_queue.bodies()[0], 1, None), ("a", system.booking_queue.bodies()[1], 3, None)
        ),
        None,
    )
    assert failures(response) == []
    assert {system.bookings.get(b.booking_id).status for b in (good, stuck)} == {CONFIRMED}


def test_a_poison_message_goes_to_the_dlq_at_once(system: Offline, settings) -> None:
    visibility = VisibilityLog()
    handler = BookingBatchHandler(system.consumer, visibility, settings)
    assert failures(handler(sqs_event(("p", "{}", 1, None)), None)) == ["p"]
    assert visibility.visible_after == {"receipt-p": 0}


def test_a_fifo_group_waits_behind_its_failed_message(system: Offline, settings) -> None:
    performance = system.new_performance("fifo_partition")
    seat = performance.seat_ids[0]
    ids = [
        system.booking_service.book(
            performance.performance_id, {"user_id": u, "seat_ids": [seat]}, None
        ).booking_id
        for u in ("ann", "bob")
    ]
    first, second = system.fifo_queue.bodies()
    visibility = VisibilityLog()
    handler = BookingBatchHandler(system.consumer, visibility, settings)
    system.bookings.outage.down("decide_in_line")
    response = handler(sqs_event(("1", first, 1, "g"), ("2", second, 1, "g")), None)
    assert failures(response) == ["1", "2"]
    assert visibility.visible_after == {"receipt-1": settings.backoff_seconds(1), "receipt-2": 0}
    assert [system.bookings.get(i).status for i in ids] == [PENDING, PENDING]  # bob not decided before ann
    system.bookings.outage.up()
    assert failures(handler(sqs_event(("1", first, 2, "g"), ("2", second, 2, "g")), None)) == []
    assert [system.bookings.get(i).status for i in ids] == [CONFIRMED, BookingStatus.REJECTED]


def test_a_fifo_message_at_its_last_delivery_is_processed_even_behind_a_failure(
    system: Offline, settings
) -> None:
    performance = system.new_performance("fifo_partition")
    seats = performance.seat_ids
    ann, bob = (
        system.booking_service.book(performance.performance_id, {"user_id": user, "seat_ids": [seat]}, None)
        for user, seat in (("ann", seats[0]), ("bob", seats[1]))
    )
    first, second = system.fifo_queue.bodies()
    visibility = VisibilityLog()
    handler = BookingBatchHandler(system.consumer, visibility, settings)
    poisoned = first.replace('"seat_ids":', '"seat_ids": "x", "was":')
    response = handler(sqs_event(("1", poisoned, 1, "g"), ("2", second, MAX_RECEIVE_COUNT, "g")), None)
    assert failures(response) == ["1"]  # the second was processed, not left to reach the DLQ uncompensated
    assert system.bookings.get(bob.booking_id).status is CONFIRMED
    assert system.bookings.get(ann.booking_id).status is FAILED  # the poison message was compensated
