"""Issue 13, "a 202 is a promise": one deterministic test per hole the review found. Each forces its
interleaving (a hook in a store, an injected clock, a proxy that loses a COMMIT's answer), never a sleep.

Where a hole was "Redis lost a hold", see also tests/integration/test_redis_async.py
(test_a_promised_seat_is_never_promised_again_after_redis_loses_it, test_a_map_that_lost_a_hold_…)."""

from __future__ import annotations

import uuid

import pytest

from chalicelib import bootstrap
from chalicelib.adapters.redis_policy import RedisMisconfigured
from chalicelib.domain.errors import IdempotencyKeyReused, SeatUnavailable, ServiceUnavailable
from chalicelib.domain.messages import BookingRequested
from chalicelib.domain.models import BookingStatus
from chalicelib.domain.seat_holds import BookingRecord
from chalicelib.services.seat_state import SeatStateService
from chalicelib.strategies.redis_async import RedisAsyncStrategy
from tests.integration.conftest import url_through
from tests.support.reconcile import past_the_deadline as past_deadline
from tests.support.reconcile import reconciler_later
from tests.support.servers import RedisServer
from tests.support.tcp_proxy import MYSQL_COMMIT

STRATEGIES = ("db_lock", "redis_lock", "redis_async", "fifo_partition", "stream_state")


def first_seat(performance: dict) -> int:
    return performance["sections"][0]["first_seat_id"]


def reconciler_at(services, seconds_later: float, bookings=None):
    """The container's reconcile job, with its clock `seconds_later` ahead (a hold deadline passed)."""
    return reconciler_later(services.reconciler, seconds_later, bookings)


def past_the_deadline(services) -> float:
    return past_deadline(services.reconciler)


class Delegate:
    """A store that behaves as the real one, with a hook on one method."""

    def __init__(self, real, **hooks) -> None:
        self._real = real
        self._hooks = hooks

    def __getattr__(self, name: str):
        return self._hooks.get(name) or getattr(self._real, name)


# --- idempotency ------------------------------------------------------------------------------------------
def test_idempotency_keys_are_per_user(services, new_performance, sql, drain) -> None:
    performance = new_performance()
    pid, seat = performance["performance_id"], first_seat(performance)
    book = services.booking_service.book

    key = f"checkout-{uuid.uuid4()}"
    ann = book(pid, {"user_id": "ann", "seat_ids": [seat]}, key)
    bob = book(pid, {"user_id": "bob", "seat_ids": [seat + 1]}, key)

    assert ann.booking_id != bob.booking_id and ann.user_id == "ann" and bob.user_id == "bob"
    assert sorted(sql("SELECT user_id FROM bookings WHERE performance_id = %s", pid)) == [("ann",), ("bob",)]
    drain()


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_a_retry_after_redis_lost_everything_returns_the_first_booking(
    strategy, services, new_performance, sql, settings, drain
) -> None:
    performance = new_performance(strategy=strategy)
    pid, seat = performance["performance_id"], first_seat(performance)
    body, key = {"user_id": "ann", "seat_ids": [seat, seat + 1]}, f"pay-{uuid.uuid4()}"
    first = services.booking_service.book(pid, body, key)
    # Redis loses everything of this run: idempotency records, booking records, the seat map.
    for redis_key in services.redis.scan_iter(match=f"{settings.redis_key_prefix}:*", count=1000):
        services.redis.delete(redis_key)

    again = services.booking_service.book(pid, body, key)

    assert again.booking_id == first.booking_id
    assert sql("SELECT COUNT(*) FROM bookings WHERE performance_id = %s", pid) == [(1,)]
    with pytest.raises(IdempotencyKeyReused):  # the key, recognised from MySQL, with another body
        services.booking_service.book(pid, {"user_id": "ann", "seat_ids": [seat + 2]}, key)
    assert sql("SELECT COUNT(*) FROM bookings WHERE performance_id = %s", pid) == [(1,)]
    drain()
    assert sql("SELECT status FROM bookings WHERE booking_id = %s", first.booking_id) == [("CONFIRMED",)]


@pytest.fixture()
def behind_proxy(settings, proxy, services):
    """A container (its own pools and breakers) whose MySQL is reached through the proxy."""
    container = bootstrap.build(
        settings.replace(
            database_url=url_through(proxy, settings.database_url),
            db_connect_timeout_seconds=1,
            db_breaker_reset_seconds=1,
        )
    )
    yield container
    container.db.close()


def warm(container, new_performance, strategy: str) -> tuple[int, int]:
    performance = new_performance(strategy=strategy)
    container.catalogue.performance(performance["performance_id"])  # read once, as a warm Lambda has
    return performance["performance_id"], first_seat(performance)


def test_a_lost_commit_acknowledgement_is_answered_from_what_mysql_holds(
    behind_proxy, proxy, new_performance, sql, services, drain
) -> None:
    pid, seat = warm(behind_proxy, new_performance, "redis_async")
    proxy.fail_next(MYSQL_COMMIT, deliver=True)  # the journal's COMMIT is applied, its answer lost

    booking = behind_proxy.booking_service.book(pid, {"user_id": "ann", "seat_ids": [seat]}, None)

    assert proxy.sprung.is_set()
    assert booking.status is BookingStatus.PENDING  # 202, not "503, nothing booked"
    assert sql("SELECT status FROM bookings WHERE booking_id = %s", booking.booking_id) == [("PENDING",)]
    assert services.seat_store.seat_states(pid)[seat] == f"H:{booking.booking_id}"
    drain()
    assert sql("SELECT status FROM bookings WHERE booking_id = %s", booking.booking_id) == [("CONFIRMED",)]


def test_a_commit_that_never_reached_mysql_answers_503_and_gives_the_seat_back(
    behind_proxy, proxy, new_performance, sql, services
) -> None:
    pid, seat = warm(behind_proxy, new_performance, "redis_async")
    proxy.fail_next(MYSQL_COMMIT, deliver=False)

    with pytest.raises(ServiceUnavailable):
        behind_proxy.booking_service.book(pid, {"user_id": "ann", "seat_ids": [seat]}, None)

    assert proxy.sprung.is_set()
    assert sql("SELECT COUNT(*) FROM bookings WHERE performance_id = %s", pid) == [(0,)]
    assert services.seat_store.seat_states(pid)[seat] == "0"


# --- every accepted booking reaches a final status ----------------------------------------------------------
@pytest.mark.parametrize("strategy", ["fifo_partition", "stream_state"])
def test_an_in_line_booking_nobody_decides_is_failed_by_reconcile(
    strategy, services, new_performance, drain, sql
) -> None:
    """Lost without a trace, before: a stream_state booking whose decision was parked (or a corrupted
    record, a message in a DLQ) stayed PENDING in Redis until its record expired; reconcile never looked."""
    performance = new_performance(strategy=strategy)
    pid, seat = performance["performance_id"], first_seat(performance)
    booking = services.booking_service.book(pid, {"user_id": "ann", "seat_ids": [seat]}, None)

    summary = reconciler_at(services, past_the_deadline(services)).run(pid)

    assert summary.repairs["stale_pending_failed"] == 1, summary
    assert services.booking_service.get(booking.booking_id).status is BookingStatus.FAILED
    drain()  # its request arrives after all: FAILED stays FAILED, and the seat is free for the next buyer
    assert services.booking_service.get(booking.booking_id).status is BookingStatus.FAILED
    later = services.booking_service.book(pid, {"user_id": "bob", "seat_ids": [seat]}, None)
    drain()
    assert services.booking_service.get(later.booking_id).status is BookingStatus.CONFIRMED
    assert sql("SELECT status FROM bookings WHERE booking_id = %s", booking.booking_id) == [("FAILED",)]


def lambda_event(body: str, receive_count: int) -> dict:
    return {
        "Records": [
            {
                "messageId": str(uuid.uuid4()),
                "receiptHandle": f"handle-{uuid.uuid4()}",
                "body": body,
                "attributes": {"ApproximateReceiveCount": str(receive_count)},
                "messageAttributes": {},
                "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:booking-events-test",
                "awsRegion": "us-east-1",
            }
        ]
    }


class Context:
    function_name = "test"
    aws_request_id = "req"

    @staticmethod
    def get_remaining_time_in_millis() -> int:
        return 30_000


def test_the_consumer_confirms_while_redis_is_away(services, new_performance, settings, sql, drain) -> None:
    """Lost after a long Redis outage, before: the consumer's Redis-backed idempotency layer failed every
    delivery, so the last one reached the DLQ with nothing compensated. MySQL alone now settles a message."""
    performance = new_performance()
    pid, seat = performance["performance_id"], first_seat(performance)
    booking = services.booking_service.book(pid, {"user_id": "ann", "seat_ids": [seat]}, None)
    no_redis = bootstrap.build(settings.replace(redis_url="redis://127.0.0.1:1/0"))
    body = BookingRequested.of(booking).to_json()

    answer = no_redis.booking_batch_handler(lambda_event(body, settings.max_receive_count), Context())

    assert answer == {"batchItemFailures": []}
    assert sql("SELECT status FROM bookings WHERE booking_id = %s", booking.booking_id) == [("CONFIRMED",)]
    no_redis.db.close()
    drain()  # the booking's own message finds it final


def test_a_give_up_while_mysql_is_away_tells_nobody_failed_and_failed_stays_failed(
    behind_proxy, proxy, new_performance, services, sql, settings, drain
) -> None:
    """FAILED could turn CONFIRMED, before: a give-up while MySQL was down wrote FAILED to the Redis record
    only (the client read FAILED); a redrive once the record was gone confirmed the booking."""
    pid, seat = warm(behind_proxy, new_performance, "redis_async")
    booking = behind_proxy.booking_service.book(pid, {"user_id": "ann", "seat_ids": [seat]}, None)
    body = BookingRequested.of(booking).to_json()
    proxy.cut()

    behind_proxy.booking_batch_handler(lambda_event(body, settings.max_receive_count), Context())

    # MySQL could not record FAILED, so nobody is told FAILED: the booking reads PENDING, its seat held.
    assert behind_proxy.booking_service.get(booking.booking_id).status is BookingStatus.PENDING
    assert services.seat_store.seat_states(pid)[seat] == f"H:{booking.booking_id}"
    proxy.start()
    assert reconciler_at(services, past_the_deadline(services)).run(pid).repairs["stale_pending_failed"] == 1
    services.seat_store.delete_record(booking.booking_id)  # the record expired, or Redis lost it

    services.booking_batch_handler(lambda_event(body, 1), Context())  # a DLQ redrive

    drain()  # and the booking's own message, still on the queue
    assert sql("SELECT status FROM bookings WHERE booking_id = %s", booking.booking_id) == [("FAILED",)]
    assert services.seat_store.seat_states(pid)[seat] == "0"


def test_reconcile_never_frees_the_seats_of_a_booking_confirmed_while_it_judged(
    services, new_performance, sql
) -> None:
    """Before: reconcile found no MySQL row for a hold, the late consumer committed, and reconcile released
    the seats anyway: a BOOKED seat showed AVAILABLE and was promised again."""
    performance = new_performance()
    pid, seat = performance["performance_id"], first_seat(performance)
    booking_id = "01" + uuid.uuid4().hex[:24].upper()  # a ULID-shaped id from long ago (1970)
    record = BookingRecord(booking_id, pid, "ann", (seat,), "redis_async", BookingStatus.PENDING)
    services.seat_store.reserve(record)  # a hold whose journal write is late
    looked: list[str] = []

    def get(wanted: str):
        found = services.bookings.get(wanted)
        if wanted == booking_id and not looked:
            looked.append(wanted)  # reconcile has seen "not in MySQL": now the late journal and confirm land
            services.bookings.insert(record.as_booking())
            services.bookings.settle(booking_id, BookingStatus.CONFIRMED)
        return found

    reconciler_at(services, 0, bookings=Delegate(services.reconciler._bookings, get=get)).run(pid)

    assert looked == [booking_id]
    assert sql("SELECT status FROM bookings WHERE booking_id = %s", booking_id) == [("CONFIRMED",)]
    assert services.seat_store.seat_states(pid)[seat] == f"B:{booking_id}"


# --- the Redis seat map and records never contradict MySQL for long -------------------------------------
def test_a_rebuilt_map_keeps_what_mysql_changed_while_it_was_read(services, new_performance) -> None:
    """Before: holders were read, a booking and a cancel committed and met no map in Redis, and the map was
    published without them (a seat sold shown AVAILABLE; a cancelled one refused until reconcile)."""
    performance = new_performance(strategy="db_lock")
    pid, seat = performance["performance_id"], first_seat(performance)
    book, cancel = services.booking_service.book, services.booking_service.cancel
    cancelled = book(pid, {"user_id": "ann", "seat_ids": [seat]}, None)
    services.seat_store.forget_performance(pid)
    sold: list = []

    def active_seat_holders(performance_id: int):
        holders = services.bookings.active_seat_holders(performance_id)
        if not sold:  # between the read and the publish: MySQL changes, Redis has no map to change
            sold.append(book(pid, {"user_id": "bob", "seat_ids": [seat + 1]}, None))
            cancel(cancelled.booking_id, "ann")
        return holders

    seat_state = SeatStateService(
        services.seat_store,
        Delegate(services.bookings, active_seat_holders=active_seat_holders),
        services.seat_state._fill_lock,
    )
    assert seat_state.publish(services.catalogue.performance(pid))

    states = services.seat_store.seat_states(pid)
    assert states[seat + 1] == f"B:{sold[0].booking_id}"
    assert states[seat] == "0"


def test_a_late_consumer_never_turns_a_cancelled_booking_back_to_confirmed(
    services, new_performance, sql, drain
) -> None:
    performance = new_performance()
    pid, seat = performance["performance_id"], first_seat(performance)
    booking = services.booking_service.book(pid, {"user_id": "ann", "seat_ids": [seat]}, None)

    def settle(booking_id, status, reason=None):
        settled = services.bookings.settle(booking_id, status, reason)
        services.booking_service.cancel(booking_id, "ann")  # lands between MySQL and the consumer's Redis
        return settled

    consumer = RedisAsyncStrategy(
        services.seat_store, services.seat_state, Delegate(services.bookings, settle=settle), None
    )
    consumer.finish(BookingRequested.of(booking))

    assert services.seat_store.read_record(booking.booking_id).status is BookingStatus.CANCELLED
    assert services.seat_store.seat_states(pid)[seat] == "0"
    assert sql("SELECT status FROM bookings WHERE booking_id = %s", booking.booking_id) == [("CANCELLED",)]
    # The seat is free, and sold once more.
    assert services.booking_service.book(pid, {"user_id": "bob", "seat_ids": [seat]}, None)
    with pytest.raises(SeatUnavailable):
        services.booking_service.book(pid, {"user_id": "cat", "seat_ids": [seat]}, None)
    drain()
    assert sql("SELECT status FROM bookings WHERE booking_id = %s", booking.booking_id) == [("CANCELLED",)]


# --- Redis must not evict ----------------------------------------------------------------------------------
def test_the_service_refuses_to_start_on_a_redis_that_may_evict(settings) -> None:
    server = RedisServer(extra_args=("--maxmemory-policy", "allkeys-lru")).start()
    try:
        with pytest.raises(RedisMisconfigured, match="allkeys-lru"):
            bootstrap.build(settings.replace(redis_url=server.url))
    finally:
        server.stop()
