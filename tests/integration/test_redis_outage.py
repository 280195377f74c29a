"""Redis goes away (killed, or hung) under the service: Redis-based bookings answer 503 within a bound and
nothing piles up; by configuration they fall back to db_lock instead, still selling each seat once; /health
says so; and once Redis is back the seat map is rebuilt from MySQL. The Redis here is a server of the test's
own (tests/support/servers.py), so it can be killed and paused; MySQL and SQS are the run's usual ones."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from chalicelib.domain.errors import CacheUnavailable, SeatUnavailable
from chalicelib.domain.models import Booking, BookingStatus
from chalicelib.services.health import check_health
from tests.integration.test_races import race
from tests.support.clock import FakeClock
from tests.support.factories import event_body
from tests.support.servers import RedisServer

pytestmark = pytest.mark.timeout(120)
SOCKET_TIMEOUT = 0.5
RESET_SECONDS = 1.0


@pytest.fixture()
def own_redis() -> Iterator[RedisServer]:
    server = RedisServer().start()
    yield server
    server.stop()


def container_on(own_redis: RedisServer, settings, fallback: str = ""):
    from chalicelib.bootstrap import build

    return build(
        settings.replace(
            redis_url=own_redis.url,
            redis_down_fallback=fallback,
            redis_socket_timeout_seconds=SOCKET_TIMEOUT,
            redis_breaker_reset_seconds=RESET_SECONDS,
        )
    )


def performance_in(container, strategy: str) -> tuple[int, int]:
    created = container.catalogue.create_event(event_body(strategy=strategy, rows=1, seats_per_row=10))
    performance = created["performances"][0]
    return performance["performance_id"], performance["sections"][0]["first_seat_id"]


def book_all(container, performance_id: int, seat: int, threads: int) -> tuple[list[object], float]:
    book = container.booking_service.book
    return race(
        [
            lambda i=i: book(performance_id, {"user_id": f"u{i}", "seat_ids": [seat]}, None)
            for i in range(threads)
        ]
    )


@pytest.mark.parametrize("failure", ["killed", "hung"])
@pytest.mark.parametrize("strategy", ["redis_async", "redis_lock"])
def test_without_redis_bookings_answer_503_within_a_bound_and_change_nothing(
    strategy, failure, services, settings, sql, own_redis
) -> None:
    container = container_on(own_redis, settings)
    # The reset period passes only when the test says so: on a loaded box the burst outlasted it (1 s), and
    # the circuit read half-open by the time the test looked.
    container.redis.breaker.clock = FakeClock()
    pid, seat = performance_in(container, strategy)
    own_redis.kill() if failure == "killed" else own_redis.pause()

    outcomes, seconds = book_all(container, pid, seat, threads=100)

    assert all(isinstance(o, CacheUnavailable) for o in outcomes), {type(o).__name__ for o in outcomes}
    # The bound: the first callers wait out one socket timeout (and the pool's wait), then the circuit is
    # open and everyone else is answered at once. Generous against a loaded machine; without the breaker a
    # hung Redis costs every one of 100 threads its own timeouts.
    assert seconds < 4 * SOCKET_TIMEOUT + 2, seconds
    assert container.redis.breaker.state == "open"
    started = time.perf_counter()
    with pytest.raises(CacheUnavailable):
        container.booking_service.book(pid, {"user_id": "late", "seat_ids": [seat]}, None)
    assert time.perf_counter() - started < SOCKET_TIMEOUT, "an open circuit answers without waiting"
    healthy, body = check_health(container.health_checks())
    assert not healthy and body["checks"]["redis"] != "ok" and body["checks"]["db"] == "ok"
    assert sql("SELECT COUNT(*) FROM bookings WHERE performance_id = %s", pid) == [(0,)]
    print(f"\n{strategy} with Redis {failure}: 100 requests answered 503 in {seconds:.2f} s")


def test_the_circuit_closes_when_redis_returns_and_the_seat_map_is_rebuilt_from_mysql(
    services, settings, sql, own_redis
) -> None:
    container = container_on(own_redis, settings, fallback="db_lock")
    clock = container.redis.breaker.clock = FakeClock()
    pid, seat = performance_in(container, "redis_async")
    own_redis.kill()

    outcomes, seconds = book_all(container, pid, seat, threads=200)

    won = [o for o in outcomes if isinstance(o, Booking)]
    refused = [o for o in outcomes if isinstance(o, SeatUnavailable)]
    assert len(won) == 1 and len(refused) == 199, {type(o).__name__ for o in outcomes}
    assert won[0].status is BookingStatus.CONFIRMED and won[0].strategy == "db_lock"
    assert sql("SELECT booking_id FROM booking_seats WHERE performance_id = %s AND active = 1", pid) == [
        (won[0].booking_id,)
    ]
    assert container.booking_service.get(won[0].booking_id).status is BookingStatus.CONFIRMED

    own_redis.start()  # back, and empty (no persistence), as after a crash
    clock.advance(RESET_SECONDS)  # the circuit's reset period
    performance = container.catalogue.performance(pid)
    seat_map = container.seat_state.seat_map(performance)  # the half-open trial, then a rebuild from MySQL
    statuses = {s["seat_id"]: s["status"] for s in seat_map["sections"][0]["seats"]}
    assert statuses[seat] == "BOOKED" and container.redis.breaker.state == "closed"
    with pytest.raises(SeatUnavailable):
        container.booking_service.book(pid, {"user_id": "after", "seat_ids": [seat]}, None)
    again = container.booking_service.book(pid, {"user_id": "after", "seat_ids": [seat + 1]}, None)
    assert again.status is BookingStatus.PENDING and again.strategy == "redis_async"
    print(f"\nfallback db_lock with Redis killed: 200 threads, 1 sold, 199 refused in {seconds:.2f} s")


def test_a_redis_that_hung_and_returns_with_stale_seats_is_rebuilt_before_it_is_trusted(
    services, settings, sql, own_redis
) -> None:
    """Redis hangs; meanwhile db_lock (the fallback) sells a seat that Redis, when it wakes up with its old
    data, still shows free. The store noted that the map missed a change, and the first use once Redis
    answers drops that map for a rebuild from MySQL (after a longer outage the circuit's recovery drops them
    all): the seat is refused, never sold twice, and the map shows it BOOKED."""
    container = container_on(own_redis, settings, fallback="db_lock")
    clock = container.redis.breaker.clock = FakeClock()
    pid, seat = performance_in(container, "redis_async")
    assert container.seat_store.seat_states(pid)[seat] == "0"
    own_redis.pause()
    sold = container.booking_service.book(pid, {"user_id": "during", "seat_ids": [seat]}, None)
    assert sold.strategy == "db_lock"

    own_redis.resume()  # back with the pre-outage state: the seat reads "0" there
    clock.advance(RESET_SECONDS)  # the circuit's reset period
    with pytest.raises(SeatUnavailable):
        container.booking_service.book(pid, {"user_id": "after", "seat_ids": [seat]}, None)

    assert container.redis.breaker.state == "closed"
    assert container.seat_store.seat_states(pid)[seat] == f"B:{sold.booking_id}"
    assert sql("SELECT COUNT(*) FROM booking_seats WHERE seat_id = %s AND active = 1", seat) == [(1,)]
