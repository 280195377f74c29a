"""The consumer when MySQL goes away: it backs off (1 s, 2 s, … by receive count) and succeeds when MySQL
returns; or, if MySQL stays away past the last retry, the message waits in the DLQ and nothing else changes:
FAILED can only be recorded in MySQL, so nobody is told FAILED, the booking stays PENDING with its seats
held, and once MySQL is back the redrive confirms it (or the reconcile job fails it past the hold deadline,
tests/integration/test_promises.py).

The outage is real: the consumer reaches MariaDB through a TCP proxy that the test cuts and restores."""

from __future__ import annotations

import boto3
import pytest

from chalicelib import bootstrap
from chalicelib.domain.models import BookingStatus
from infra.local.sqs_poller import SqsEventSourcePoller
from tests.integration.conftest import url_through
from tests.support.waiting import wait_for


@pytest.fixture()
def consumer_behind_proxy(settings, proxy, services):
    """A second process-like container whose MySQL connections go through the proxy; retries are recorded."""
    url = url_through(proxy, settings.database_url)
    consumer = bootstrap.build(settings.replace(database_url=url, db_connect_timeout_seconds=1))
    delays: list[int] = []
    retry_after = consumer.booking_queue.retry_after

    def recording_retry_after(receipt_handle: str, seconds: int) -> None:
        delays.append(seconds)
        retry_after(receipt_handle, seconds)

    consumer.booking_queue.retry_after = recording_retry_after
    yield consumer, delays
    consumer.db.close()


def poller_for(consumer, queues, settings) -> SqsEventSourcePoller:
    sqs = boto3.client("sqs", endpoint_url=settings.aws_endpoint_url, region_name=settings.aws_region)
    return SqsEventSourcePoller(
        consumer.booking_batch_handler,
        queues["booking"].queue_url,
        sqs,
        batch_size=10,
        function_name="outage-test",
        wait_time_seconds=1,
    )


def test_the_consumer_backs_off_and_succeeds_when_mysql_returns(
    services, new_performance, consumer_behind_proxy, proxy, queues, settings
) -> None:
    consumer, delays = consumer_behind_proxy
    performance = new_performance()
    seat = performance["sections"][0]["first_seat_id"]
    booking = services.booking_service.book(
        performance["performance_id"], {"user_id": "ann", "seat_ids": [seat]}, None
    )
    proxy.cut()

    poller = poller_for(consumer, queues, settings)
    poller.start()
    try:
        wait_for(lambda: len(delays) >= 2, 30)  # two deliveries failed with MySQL down
        proxy.start()
        wait_for(
            lambda: services.booking_service.get(booking.booking_id).status is BookingStatus.CONFIRMED, 30
        )
    finally:
        poller.stop(timeout=10)
    assert delays[:2] == [1, 2], "exponential backoff by receive count"
    assert services.seat_store.seat_states(performance["performance_id"])[seat] == f"B:{booking.booking_id}"


def test_mysql_down_past_the_last_retry_keeps_the_hold_and_the_redrive_confirms_it(
    services, new_performance, consumer_behind_proxy, proxy, queues, settings, drain, sql
) -> None:
    consumer, delays = consumer_behind_proxy
    performance = new_performance()
    pid, seat = performance["performance_id"], performance["sections"][0]["first_seat_id"]
    booking = services.booking_service.book(pid, {"user_id": "ann", "seat_ids": [seat]}, None)
    proxy.cut()

    poller = poller_for(consumer, queues, settings)
    poller.run_until_idle(idle_seconds=3, timeout=60)

    assert delays == [1, 2, 0], "backoff 1 s, 2 s, then straight on to the DLQ after the last receive"
    assert services.seat_store.seat_states(pid)[seat] == f"H:{booking.booking_id}", "the promise is kept"
    assert services.booking_service.get(booking.booking_id).status is BookingStatus.PENDING

    sqs = boto3.client("sqs", endpoint_url=settings.aws_endpoint_url, region_name=settings.aws_region)
    dead = sqs.receive_message(QueueUrl=queues["booking"].dlq_url, MaxNumberOfMessages=10, WaitTimeSeconds=1)
    mine = [m for m in dead.get("Messages", []) if booking.booking_id in m["Body"]]
    assert len(mine) == 1
    # MySQL is back (the shared pool never used the proxy); redrive the message to the booking queue.
    sqs.send_message(QueueUrl=queues["booking"].queue_url, MessageBody=mine[0]["Body"])
    sqs.delete_message(QueueUrl=queues["booking"].dlq_url, ReceiptHandle=mine[0]["ReceiptHandle"])
    drain()

    assert sql("SELECT status FROM bookings WHERE booking_id = %s", booking.booking_id) == [("CONFIRMED",)]
    assert services.seat_store.seat_states(pid)[seat] == f"B:{booking.booking_id}"
    assert sql("SELECT action FROM reconcile_log WHERE booking_id = %s", booking.booking_id) == []
