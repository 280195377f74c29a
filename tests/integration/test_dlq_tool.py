"""The DLQ tool against moto's SQS and the real consumer: messages the consumer gave up on land in the DLQ,
`list` and `show` see them without consuming them, `redrive` sends them back to their source queue (a FIFO
message into its own group) and the consumer processes them idempotently: nothing is stored twice."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import boto3
import pytest

import app as app_module
from chalicelib.domain.models import BookingStatus
from chalicelib.domain.seat_holds import BookingRecord
from infra import dlq as dlq_command
from infra.dlq import DeadLetterQueue
from infra.local.sqs_poller import SqsEventSourcePoller, pollers_for_app

pytestmark = pytest.mark.timeout(120)


@pytest.fixture()
def sqs(settings):
    return boto3.client("sqs", endpoint_url=settings.aws_endpoint_url, region_name=settings.aws_region)


@pytest.fixture()
def failing(services, monkeypatch) -> dict[str, str]:
    """Booking id -> how its consumer fails: "before" it stores anything, or "after" storing it (a consumer
    that dies after its commit). The asynchronous strategies the consumer dispatches to are wrapped."""
    plans: dict[str, str] = {}
    for name in ("redis_async", "fifo_partition"):
        strategy = services.strategies[name]

        def finish(message, real=strategy.finish):
            plan = plans.get(message.booking_id)
            if plan == "after":
                real(message)
            if plan:
                raise RuntimeError(f"injected failure ({plan})")
            return real(message)

        monkeypatch.setattr(strategy, "finish", finish)
    return plans


@pytest.fixture()
def ours(sqs, settings) -> Iterator[set[str]]:
    """Booking ids this test puts in a DLQ; whatever of them is left there is deleted afterwards (other tests
    read the DLQs too)."""
    booking_ids: set[str] = set()
    yield booking_ids
    for name in (settings.booking_dlq_name, settings.fifo_dlq_name):
        url = sqs.get_queue_url(QueueName=name)["QueueUrl"]
        others = []
        for _ in range(100):
            messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=30)
            if not messages.get("Messages"):
                break
            for message in messages["Messages"]:
                if _booking_id(message["Body"]) in booking_ids:
                    sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
                else:
                    others.append(message)
        for message in others:
            sqs.change_message_visibility(
                QueueUrl=url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
            )


def _booking_id(body: str) -> str | None:
    try:
        return json.loads(body).get("booking_id")
    except (ValueError, AttributeError):
        return None


def consumer_of(sqs, queue_name: str) -> SqsEventSourcePoller:
    """The app's event source of one queue only (the shared drain also waits on every other one)."""
    (poller,) = [
        p
        for p in pollers_for_app(
            app_module, sqs, function_name_prefix="seat-booking-test", wait_time_seconds=0
        )
        if p.queue_url.endswith(f"/{queue_name}")
    ]
    return poller


def statuses(sql, pid: int) -> dict[str, str]:
    return dict(sql("SELECT booking_id, status FROM bookings WHERE performance_id = %s", pid))


def actions(sql, booking_id: str) -> list[str]:
    return [
        a
        for (a,) in sql("SELECT action FROM reconcile_log WHERE booking_id = %s ORDER BY action", booking_id)
    ]


def test_dead_letters_are_listed_without_consuming_and_redriven_idempotently(
    services, new_performance, sqs, settings, sql, failing, ours, queues, capsys
) -> None:
    performance = new_performance(rows=1, seats_per_row=3)
    pid, first = performance["performance_id"], performance["sections"][0]["first_seat_id"]
    seats = [first, first + 1, first + 2]
    failed = services.booking_service.book(pid, {"user_id": "ann", "seat_ids": [seats[0]]}, None).booking_id
    confirmed = services.booking_service.book(
        pid, {"user_id": "bob", "seat_ids": [seats[1]]}, None
    ).booking_id
    poison = f"POISON{uuid.uuid4().hex[:10].upper()}"
    # An accepted booking (journaled, its seat held) whose message arrives corrupted.
    record = BookingRecord(poison, pid, "cat", (seats[2],), "redis_async", BookingStatus.PENDING)
    services.bookings.insert(record.as_booking())
    services.seat_store.reserve(record)
    sqs.send_message(
        QueueUrl=queues["booking"].queue_url,
        MessageBody=json.dumps({"booking_id": poison, "performance_id": pid, "seat_ids": "oops"}),
    )
    ours.update({failed, confirmed, poison})
    failing.update({failed: "before", confirmed: "after"})
    consumer = consumer_of(sqs, settings.booking_queue_name)

    consumer.run_until_idle(idle_seconds=2.5, timeout=60)  # backoff 1 s, 2 s, then given up: the DLQ

    assert statuses(sql, pid) == {failed: "FAILED", confirmed: "CONFIRMED", poison: "FAILED"}
    dlq = DeadLetterQueue.named(
        sqs, "booking", settings.booking_dlq_name, settings.booking_queue_name, wait_seconds=0
    )
    letters = {letter.booking_id: letter for letter in dlq.peek() if letter.booking_id in ours}
    assert set(letters) == ours
    assert all(letter.receive_count >= settings.max_receive_count for letter in letters.values())
    assert all(letter.first_sent is not None and letter.group_id is None for letter in letters.values())
    assert ours <= {letter.booking_id for letter in dlq.peek()}, "looking consumed nothing"

    assert dlq_command.main(["--queue", "booking", "list"]) == 0
    listed = capsys.readouterr().out
    assert all(letters[b].message_id in listed and b in listed for b in ours)
    assert dlq_command.main(["show", letters[failed].message_id]) == 0
    shown = capsys.readouterr().out
    assert f'"booking_id": "{failed}"' in shown and "ApproximateReceiveCount" in shown

    failing.clear()  # the bug is fixed: redrive
    redrive = ["--queue", "booking", "redrive", *(letter.message_id for letter in letters.values())]
    assert dlq_command.main(redrive) == 0
    assert "booking: 3 redriven, 0 failed" in capsys.readouterr().out
    consumer.run_until_idle(idle_seconds=1.5, timeout=60)

    # One row per booking, each decided as before; no seat held twice; every compensation logged once.
    assert statuses(sql, pid) == {failed: "FAILED", confirmed: "CONFIRMED", poison: "FAILED"}
    active = sql(
        "SELECT seat_id, booking_id FROM booking_seats WHERE performance_id = %s AND active = 1", pid
    )
    assert active == [(seats[1], confirmed)]
    assert actions(sql, failed) == ["booking_failed"]
    assert actions(sql, confirmed) == []
    assert actions(sql, poison) == ["booking_failed", "poison_message"]
    assert services.seat_store.seat_states(pid) == {seats[0]: "0", seats[1]: f"B:{confirmed}", seats[2]: "0"}
    # A poison message can never succeed: it is back in the DLQ. The others are gone from it.
    assert {letter.booking_id for letter in dlq.peek() if letter.booking_id in ours} == {poison}


def test_the_fifo_dlq_redrives_into_the_same_group(
    services, new_performance, sqs, settings, sql, failing, ours, queues, capsys
) -> None:
    performance = new_performance(strategy="fifo_partition", rows=1, seats_per_row=2)
    pid, seat = performance["performance_id"], performance["sections"][0]["first_seat_id"]
    group = f"performance-{pid}-section-{performance['sections'][0]['section_id']}"
    booking = services.booking_service.book(pid, {"user_id": "ann", "seat_ids": [seat]}, None).booking_id
    ours.add(booking)
    failing[booking] = "before"
    consumer = consumer_of(sqs, settings.fifo_queue_name)

    consumer.run_until_idle(idle_seconds=2.5, timeout=60)

    assert statuses(sql, pid) == {booking: "FAILED"}
    dlq = DeadLetterQueue.named(sqs, "fifo", settings.fifo_dlq_name, settings.fifo_queue_name, wait_seconds=0)
    (letter,) = [letter for letter in dlq.peek() if letter.booking_id == booking]
    assert letter.group_id == group
    assert dlq_command.main(["--queue", "fifo", "list"]) == 0
    assert group in capsys.readouterr().out

    failing.clear()
    result = dlq.redrive({letter.message_id})
    assert (result.moved, result.failed) == ([letter.message_id], [])
    waiting = sqs.receive_message(
        QueueUrl=queues["fifo"].queue_url,
        MaxNumberOfMessages=10,
        VisibilityTimeout=0,
        AttributeNames=["All"],
        MessageSystemAttributeNames=["All"],
    )["Messages"]
    (redriven,) = [m for m in waiting if _booking_id(m["Body"]) == booking]
    assert redriven["Attributes"]["MessageGroupId"] == group
    assert redriven["Attributes"]["MessageDeduplicationId"] == f"redrive-{letter.message_id}"
    consumer.run_until_idle(idle_seconds=1.5, timeout=60)

    assert statuses(sql, pid) == {booking: "FAILED"}
    assert sql("SELECT COUNT(*) FROM booking_seats WHERE performance_id = %s AND active = 1", pid) == [(0,)]
    assert actions(sql, booking) == ["booking_failed"]
    assert services.seat_store.seat_states(pid)[seat] == "0"
    assert not [letter for letter in dlq.peek() if letter.booking_id == booking]
