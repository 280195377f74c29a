"""`redis_async` end to end on real MariaDB, real Redis and moto's SQS, delivered by the local poller."""

from __future__ import annotations

import json
import threading
import uuid

import boto3
import pytest

import app as app_module
from chalicelib.adapters.sqs import SqsQueue
from chalicelib.domain.errors import (
    IdempotencyInProgress,
    IdempotencyKeyReused,
    InvalidRequest,
    NotCancellable,
    NotFound,
    SeatUnavailable,
    ServiceUnavailable,
)
from chalicelib.domain.models import BookingStatus
from chalicelib.domain.seat_holds import BookingRecord
from chalicelib.services.booking import per_user
from chalicelib.strategies.redis_async import RedisAsyncStrategy


@pytest.fixture()
def sqs(settings):
    return boto3.client("sqs", endpoint_url=settings.aws_endpoint_url, region_name=settings.aws_region)


def seat_status(services, performance_id: int, seat_id: int) -> str:
    seat_map = services.seat_state.seat_map(services.catalogue.performance(performance_id))
    return next(s["status"] for sec in seat_map["sections"] for s in sec["seats"] if s["seat_id"] == seat_id)


def first_seat(performance: dict) -> int:
    return performance["sections"][0]["first_seat_id"]


def lambda_event(*bodies: str) -> dict:
    return {
        "Records": [
            {
                "messageId": str(uuid.uuid4()),
                "receiptHandle": f"handle-{uuid.uuid4()}",
                "body": body,
                "attributes": {"ApproximateReceiveCount": "1"},
                "messageAttributes": {},
                "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:booking-events-test",
                "awsRegion": "us-east-1",
            }
            for body in bodies
        ]
    }


class _Context:
    function_name = "test"
    aws_request_id = "req"

    @staticmethod
    def get_remaining_time_in_millis() -> int:
        return 30_000


def test_a_booking_goes_pending_then_confirmed(services, new_performance, drain, sql) -> None:
    performance = new_performance()
    seat = first_seat(performance)
    booking = services.booking_service.book(
        performance["performance_id"], {"user_id": "ann", "seat_ids": [seat]}, None
    )

    assert booking.status is BookingStatus.PENDING
    assert services.booking_service.get(booking.booking_id).status is BookingStatus.PENDING
    assert seat_status(services, performance["performance_id"], seat) == "HELD"

    assert drain() == 1
    confirmed = services.booking_service.get(booking.booking_id)
    assert confirmed.status is BookingStatus.CONFIRMED
    assert confirmed.seat_ids == (seat,)
    assert seat_status(services, performance["performance_id"], seat) == "BOOKED"
    assert sql("SELECT status FROM bookings WHERE booking_id = %s", booking.booking_id) == [("CONFIRMED",)]
    assert sql("SELECT seat_id, active FROM booking_seats WHERE booking_id = %s", booking.booking_id) == [
        (seat, 1)
    ]


def test_a_taken_seat_is_refused_at_once_and_nothing_changes(services, new_performance, drain, sql) -> None:
    performance = new_performance()
    pid, seat = performance["performance_id"], first_seat(performance)
    services.booking_service.book(pid, {"user_id": "ann", "seat_ids": [seat, seat + 1]}, None)
    version_before = services.seat_store.version(pid)

    with pytest.raises(SeatUnavailable) as refused:
        services.booking_service.book(pid, {"user_id": "bob", "seat_ids": [seat + 1, seat + 2]}, None)

    assert refused.value.seat_ids == [seat + 1]
    assert seat_status(services, pid, seat + 2) == "AVAILABLE", "all-or-nothing: the free seat stays free"
    assert services.seat_store.version(pid) == version_before
    drain()
    assert sql("SELECT user_id, status FROM bookings WHERE performance_id = %s", pid) == [
        ("ann", "CONFIRMED")
    ]


def test_seats_of_another_performance_and_unknown_seats_are_refused(services, new_performance) -> None:
    mine, other = new_performance(), new_performance()
    with pytest.raises(InvalidRequest, match="another performance"):
        services.booking_service.book(
            mine["performance_id"], {"user_id": "ann", "seat_ids": [first_seat(other)]}, None
        )
    with pytest.raises(NotFound):
        services.booking_service.book(mine["performance_id"], {"user_id": "ann", "seat_ids": [10**9]}, None)
    with pytest.raises(NotFound):
        services.booking_service.book(10**9, {"user_id": "ann", "seat_ids": [1]}, None)
    assert seat_status(services, mine["performance_id"], first_seat(mine)) == "AVAILABLE"


def test_an_idempotency_key_replays_the_first_answer(services, new_performance, drain, sql) -> None:
    performance = new_performance()
    pid, seat = performance["performance_id"], first_seat(performance)
    key = f"key-{uuid.uuid4()}"
    body = {"user_id": "ann", "seat_ids": [seat]}

    first = services.booking_service.book(pid, body, key)
    again = services.booking_service.book(pid, body, key)
    assert again == first, "same key, same body: the same booking, not a second one"

    with pytest.raises(IdempotencyKeyReused):
        services.booking_service.book(pid, {"user_id": "ann", "seat_ids": [seat + 1]}, key)
    assert seat_status(services, pid, seat + 1) == "AVAILABLE"

    # A refusal is an answer too: replayed for its key even after the seat's owner changes nothing.
    other_key = f"key-{uuid.uuid4()}"
    for _ in range(2):
        with pytest.raises(SeatUnavailable):
            services.booking_service.book(pid, {"user_id": "bob", "seat_ids": [seat]}, other_key)

    drain()
    assert sql("SELECT COUNT(*) FROM bookings WHERE performance_id = %s", pid) == [(1,)]


def test_an_idempotency_key_in_flight_is_refused(services, new_performance) -> None:
    performance = new_performance()
    pid, seat = performance["performance_id"], first_seat(performance)
    key = f"key-{uuid.uuid4()}"
    fingerprint = {"performance_id": pid, "user_id": "ann", "seat_ids": [seat]}
    started, release = threading.Event(), threading.Event()

    def slow_first_request() -> dict:
        started.set()
        release.wait(10)
        return {"seat_unavailable": [seat]}

    first = threading.Thread(
        target=services.idempotency.run_once,
        args=("book", per_user("ann", key), fingerprint, slow_first_request),
    )
    first.start()
    try:
        assert started.wait(10)
        with pytest.raises(IdempotencyInProgress):
            services.booking_service.book(pid, {"user_id": "ann", "seat_ids": [seat]}, key)
    finally:
        release.set()
        first.join()


def test_a_redelivered_message_writes_one_booking(services, new_performance, sql) -> None:
    performance = new_performance()
    pid, seat = performance["performance_id"], first_seat(performance)
    booking = services.booking_service.book(pid, {"user_id": "ann", "seat_ids": [seat]}, None)
    body = json.dumps(
        {
            "booking_id": booking.booking_id,
            "performance_id": pid,
            "user_id": "ann",
            "seat_ids": [seat],
            "strategy": "redis_async",
            "type": "booking.requested",
        }
    )

    # The same message twice in one batch (SQS standard queues deliver at least once), then once more: the
    # consumer settles by compare-and-set in MySQL (no idempotency record), so one booking either way.
    assert app_module.on_booking_event(lambda_event(body, body), _Context()) == {"batchItemFailures": []}
    assert app_module.on_booking_event(lambda_event(body), _Context()) == {"batchItemFailures": []}

    assert sql("SELECT status FROM bookings WHERE booking_id = %s", booking.booking_id) == [("CONFIRMED",)]
    assert sql("SELECT COUNT(*) FROM booking_seats WHERE seat_id = %s", seat) == [(1,)]


def test_a_poison_message_is_compensated_and_lands_in_the_dlq(
    services, new_performance, drain, sql, sqs, queues
):
    performance = new_performance()
    pid, seat = performance["performance_id"], first_seat(performance)
    booking_id = f"POISON{uuid.uuid4().hex[:10].upper()}"
    # An accepted booking (journaled, its seat held) whose message is malformed (a producer bug): it can
    # never be confirmed.
    record = BookingRecord(booking_id, pid, "ann", (seat,), "redis_async", BookingStatus.PENDING)
    services.bookings.insert(record.as_booking())
    services.seat_store.reserve(record)
    assert seat_status(services, pid, seat) == "HELD"
    sqs.send_message(
        QueueUrl=queues["booking"].queue_url,
        MessageBody=json.dumps({"booking_id": booking_id, "performance_id": pid, "seat_ids": "oops"}),
    )
    sqs.send_message(QueueUrl=queues["booking"].queue_url, MessageBody="definitely not json")

    drain()

    assert seat_status(services, pid, seat) == "AVAILABLE"
    assert services.booking_service.get(booking_id).status is BookingStatus.FAILED
    actions = sql("SELECT action FROM reconcile_log WHERE booking_id = %s ORDER BY action", booking_id)
    assert actions == [("booking_failed",), ("poison_message",)]
    assert sql("SELECT COUNT(*) FROM reconcile_log WHERE detail LIKE %s", "%definitely not json%") == [(1,)]
    dlq = sqs.receive_message(QueueUrl=queues["booking"].dlq_url, MaxNumberOfMessages=10, WaitTimeSeconds=1)
    bodies = sorted(m["Body"] for m in dlq.get("Messages", []))
    assert len(bodies) == 2 and "definitely not json" in bodies
    for message in dlq["Messages"]:
        sqs.delete_message(QueueUrl=queues["booking"].dlq_url, ReceiptHandle=message["ReceiptHandle"])


def test_cancel_before_and_after_confirmation(services, new_performance, drain, sql) -> None:
    performance = new_performance()
    pid, seat = performance["performance_id"], first_seat(performance)
    early = services.booking_service.book(pid, {"user_id": "ann", "seat_ids": [seat]}, None)
    late = services.booking_service.book(pid, {"user_id": "bob", "seat_ids": [seat + 1]}, None)

    with pytest.raises(NotFound):  # not theirs: as if it did not exist
        services.booking_service.cancel(early.booking_id, "mallory")
    assert services.booking_service.cancel(early.booking_id, "ann").status is BookingStatus.CANCELLED
    assert seat_status(services, pid, seat) == "AVAILABLE"

    drain()  # the consumer meets a booking that was cancelled first: it must not resurrect it
    assert services.booking_service.get(early.booking_id).status is BookingStatus.CANCELLED
    assert services.booking_service.get(late.booking_id).status is BookingStatus.CONFIRMED

    assert services.booking_service.cancel(late.booking_id, "bob").status is BookingStatus.CANCELLED
    assert seat_status(services, pid, seat + 1) == "AVAILABLE"
    with pytest.raises(NotCancellable):
        services.booking_service.cancel(late.booking_id, "bob")
    assert sql("SELECT COUNT(*) FROM booking_seats WHERE performance_id = %s AND active = 1", pid) == [(0,)]

    # Freed seats can be sold again.
    again = services.booking_service.book(pid, {"user_id": "cat", "seat_ids": [seat, seat + 1]}, None)
    drain()
    assert services.booking_service.get(again.booking_id).status is BookingStatus.CONFIRMED


def test_a_failed_queue_send_gives_the_seats_back_and_answers_503(
    services, new_performance, settings
) -> None:
    from chalicelib.adapters import aws

    performance = services.catalogue.performance(new_performance()["performance_id"])
    seat = performance.sections[0].first_seat_id
    broken_queue = SqsQueue(aws.client("sqs", settings), "no-such-queue")
    strategy = RedisAsyncStrategy(services.seat_store, services.seat_state, services.bookings, broken_queue)
    from chalicelib.domain.models import BookingRequest

    request = BookingRequest(
        "SENDFAIL" + uuid.uuid4().hex[:8].upper(),
        performance.performance_id,
        "ann",
        (seat,),
        "redis_async",
        performance,
    )
    with pytest.raises(ServiceUnavailable):
        strategy.book(request)
    assert seat_status(services, performance.performance_id, seat) == "AVAILABLE"
    record = services.seat_store.read_record(request.booking_id, performance.performance_id)
    assert record.status is BookingStatus.FAILED  # (an id of no ULID: found through its performance)


def test_seat_state_lost_in_redis_is_rebuilt_from_mysql(services, new_performance, drain) -> None:
    performance = new_performance()
    pid, seat = performance["performance_id"], first_seat(performance)
    confirmed = services.booking_service.book(pid, {"user_id": "ann", "seat_ids": [seat]}, None)
    drain()
    pending = services.booking_service.book(pid, {"user_id": "bob", "seat_ids": [seat + 1]}, None)
    services.seat_store.forget_performance(pid)  # Redis restarted without persistence

    assert seat_status(services, pid, seat) == "BOOKED", "rebuilt from MySQL, the truth for confirmed seats"
    assert services.seat_store.seat_states(pid)[seat] == f"B:{confirmed.booking_id}"
    # The hold of a booking not yet confirmed is journaled in MySQL: the rebuilt map has it too.
    assert services.seat_store.seat_states(pid)[seat + 1] == f"H:{pending.booking_id}"
    for taken in (seat, seat + 1):
        with pytest.raises(SeatUnavailable):
            services.booking_service.book(pid, {"user_id": "cat", "seat_ids": [taken]}, None)
    drain()
    assert services.booking_service.get(pending.booking_id).status is BookingStatus.CONFIRMED
    assert seat_status(services, pid, seat + 1) == "BOOKED"


def test_a_promised_seat_is_never_promised_again_after_redis_loses_it(
    services, new_performance, drain, sql
) -> None:
    """Issue 13's reproduction: book seat X (202), the performance's Redis keys vanish before the consumer
    ran, book X as someone else. Before the journal the second buyer got a 202 too and the first one ended
    REJECTED; now the second is refused at once and the first is confirmed."""
    performance = new_performance()
    pid, seat = performance["performance_id"], first_seat(performance)
    first = services.booking_service.book(pid, {"user_id": "ann", "seat_ids": [seat]}, None)
    assert first.status is BookingStatus.PENDING
    services.seat_store.forget_performance(pid)  # Redis loses the hold before the consumer ran

    with pytest.raises(SeatUnavailable):
        services.booking_service.book(pid, {"user_id": "bob", "seat_ids": [seat]}, None)
    drain()

    assert services.booking_service.get(first.booking_id).status is BookingStatus.CONFIRMED
    assert sql("SELECT user_id, status FROM bookings WHERE performance_id = %s", pid) == [
        ("ann", "CONFIRMED")
    ]
    assert services.seat_store.seat_states(pid)[seat] == f"B:{first.booking_id}"


def test_a_map_that_lost_a_hold_is_refused_by_the_guard_and_repaired(services, new_performance, sql) -> None:
    """A map can also miss a hold without being rebuilt (a failover to a replica that missed the last
    writes): the Lua take then succeeds, and MySQL's guard refuses the journal entry. The buyer gets 409, the
    take is given back and the real holder is put back on the map."""
    performance = new_performance()
    pid, seat = performance["performance_id"], first_seat(performance)
    first = services.booking_service.book(pid, {"user_id": "ann", "seat_ids": [seat]}, None)
    services.redis.hset(services.seat_store.seats_key(pid), str(seat), "0")  # the replica missed the take

    with pytest.raises(SeatUnavailable) as refused:
        services.booking_service.book(pid, {"user_id": "bob", "seat_ids": [seat]}, None)

    assert refused.value.seat_ids == [seat]
    assert services.seat_store.seat_states(pid)[seat] == f"H:{first.booking_id}"
    assert sql("SELECT user_id FROM bookings WHERE performance_id = %s", pid) == [("ann",)]
