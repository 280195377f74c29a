"""The seat map under a cold Redis: one MySQL query fills a missing map however many readers race for it, in
one process or several; rendered maps are reused only while Redis says nothing changed (or, if configured,
for at most SEAT_MAP_CACHE_SECONDS). Real MariaDB and Redis."""

from __future__ import annotations

import multiprocessing
import threading
import time
from collections.abc import Callable

import pytest

from chalicelib.adapters.fill_lock import RedisFillLock
from chalicelib.domain.errors import ServiceUnavailable
from chalicelib.domain.models import Performance
from chalicelib.services.seat_state import SeatStateService

pytestmark = pytest.mark.timeout(120)
COLD_READERS = 200
QUERY_SECONDS = 0.2  # the fill query is slowed down so that every reader surely meets the cold map


def statuses_of(seat_map: dict) -> dict[int, str]:
    return {seat["seat_id"]: seat["status"] for section in seat_map["sections"] for seat in section["seats"]}


def counting(func: Callable, calls: list, delay: float = 0.0) -> Callable:
    def wrapper(*args, **kwargs):
        calls.append(args)
        time.sleep(delay)
        return func(*args, **kwargs)

    return wrapper


def booked_db_lock_performance(services, new_performance) -> tuple[Performance, dict[int, str]]:
    """A performance with two seats booked in MySQL, and the map every reader must see."""
    created = new_performance(strategy="db_lock", rows=10, seats_per_row=20)
    performance = services.catalogue.performance(created["performance_id"])
    first = performance.sections[0].first_seat_id
    services.booking_service.book(performance.performance_id, {"user_id": "ann", "seat_ids": [first]}, None)
    services.booking_service.book(
        performance.performance_id, {"user_id": "bob", "seat_ids": [first + 7]}, None
    )
    expected = {seat: "AVAILABLE" for seat in performance.seat_ids} | {first: "BOOKED", first + 7: "BOOKED"}
    return performance, expected


def read_concurrently(read: Callable[[], dict], readers: int) -> list[dict | BaseException]:
    barrier = threading.Barrier(readers)
    results: list[dict | BaseException] = [RuntimeError("no answer")] * readers

    def reader(i: int) -> None:
        barrier.wait()
        try:
            results[i] = read()
        except BaseException as exc:
            results[i] = exc

    threads = [threading.Thread(target=reader, args=(i,)) for i in range(readers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


# One fill of a cold map reads MySQL's holders twice: to publish, then to catch up with what changed while
# it published (SeatStateService._fill). However many readers meet the cold map, there is one fill.
ONE_FILL = 2


def test_200_concurrent_cold_reads_cost_mysql_one_fill(
    services, new_performance, redis_client, monkeypatch
) -> None:
    performance, expected = booked_db_lock_performance(services, new_performance)
    pid = performance.performance_id
    redis_client.delete(services.seat_store.seats_key(pid))  # cold: Redis restarted, evicted, dropped it
    queries: list = []
    monkeypatch.setattr(
        services.bookings,
        "active_seat_holders",
        counting(services.bookings.active_seat_holders, queries, QUERY_SECONDS),
    )
    misses: list[int] = []
    read_snapshot = services.seat_store.versioned_statuses

    def snapshot(performance_id: int):
        version, statuses = read_snapshot(performance_id)
        if statuses is None:
            misses.append(performance_id)
        return version, statuses

    monkeypatch.setattr(services.seat_store, "versioned_statuses", snapshot)

    results = read_concurrently(lambda: services.seat_state.seat_map(performance), COLD_READERS)

    failures = [r for r in results if isinstance(r, BaseException)]
    assert not failures, failures[:3]
    assert len(queries) == ONE_FILL, (
        f"{len(queries)} active_seat_holders queries for {COLD_READERS} cold reads"
    )
    assert all(statuses_of(r) == expected for r in results), "every reader sees the map MySQL holds"
    print(f"\n{COLD_READERS} cold reads: {len(misses)} met the missing map, {len(queries)} MySQL reads")
    assert len(misses) > 1, "the readers really raced for the cold map"


def _cold_reads_in_a_process(performance_id: int, readers: int, start, answers) -> None:
    """One process of its own (its own container, pools and in-process caches) reading a cold map."""
    from chalicelib.bootstrap import build
    from chalicelib.config import Settings

    services = build(Settings.from_env())
    queries: list = []
    services.bookings.active_seat_holders = counting(
        services.bookings.active_seat_holders, queries, QUERY_SECONDS
    )
    performance = services.catalogue.performance(performance_id)
    start.wait()
    results = read_concurrently(lambda: services.seat_state.seat_map(performance), readers)
    answers.put((len(queries), [statuses_of(r) if isinstance(r, dict) else repr(r) for r in results]))


def test_cold_reads_from_two_processes_cost_mysql_one_fill(services, new_performance, redis_client) -> None:
    performance, expected = booked_db_lock_performance(services, new_performance)
    pid = performance.performance_id
    redis_client.delete(services.seat_store.seats_key(pid))
    spawn = multiprocessing.get_context("spawn")
    start, answers = spawn.Barrier(2), spawn.Queue()
    processes = [
        spawn.Process(target=_cold_reads_in_a_process, args=(pid, 25, start, answers)) for _ in range(2)
    ]
    for process in processes:
        process.start()
    outcomes = [answers.get(timeout=90) for _ in processes]
    for process in processes:
        process.join(timeout=30)

    assert sum(queries for queries, _ in outcomes) == ONE_FILL, (
        f"queries per process: {[q for q, _ in outcomes]}"
    )
    assert all(seat_map == expected for _, maps in outcomes for seat_map in maps)


def _new_version_reads_in_a_process(performance_id: int, readers: int, start, answers) -> None:
    """One process of its own reading a map version it has never seen: how often it read the seats (and so
    rendered the map) itself."""
    from chalicelib.bootstrap import build
    from chalicelib.config import Settings

    services = build(Settings.from_env())
    renders: list = []
    services.seat_store.versioned_statuses = counting(
        services.seat_store.versioned_statuses, renders, QUERY_SECONDS
    )
    performance = services.catalogue.performance(performance_id)
    start.wait()
    results = read_concurrently(lambda: services.seat_state.seat_map(performance), readers)
    answers.put((len(renders), [statuses_of(r) if isinstance(r, dict) else repr(r) for r in results]))


def test_a_new_version_is_rendered_once_across_two_processes(services, new_performance) -> None:
    """Issue 15: the first reader of a version renders it and stores its bytes in Redis; every other reader,
    in any process, waits for them (single flight) instead of reading the seats and rendering again."""
    performance, expected = booked_db_lock_performance(services, new_performance)
    services.seat_state.seat_map(performance)  # the map is loaded: what follows is a new version, not a fill
    seat = performance.sections[0].first_seat_id + 3
    services.booking_service.book(performance.performance_id, {"user_id": "cat", "seat_ids": [seat]}, None)
    expected = {**expected, seat: "BOOKED"}  # a version nobody has rendered yet
    spawn = multiprocessing.get_context("spawn")
    start, answers = spawn.Barrier(2), spawn.Queue()
    processes = [
        spawn.Process(
            target=_new_version_reads_in_a_process, args=(performance.performance_id, 25, start, answers)
        )
        for _ in range(2)
    ]
    for process in processes:
        process.start()
    outcomes = [answers.get(timeout=90) for _ in processes]
    for process in processes:
        process.join(timeout=30)

    assert sum(renders for renders, _ in outcomes) == 1, f"renders per process: {[r for r, _ in outcomes]}"
    assert all(seat_map == expected for _, maps in outcomes for seat_map in maps)


def test_an_unchanged_map_is_not_read_again_and_a_change_shows_at_once(
    services, new_performance, monkeypatch
) -> None:
    performance, expected = booked_db_lock_performance(services, new_performance)
    assert statuses_of(services.seat_state.seat_map(performance)) == expected
    reads: list = []
    monkeypatch.setattr(
        services.seat_store, "versioned_statuses", counting(services.seat_store.versioned_statuses, reads)
    )

    for _ in range(50):
        assert statuses_of(services.seat_state.seat_map(performance)) == expected
    assert reads == [], "an unchanged map is answered from the rendered copy (one version check each)"

    seat = performance.sections[0].first_seat_id + 1
    services.booking_service.book(performance.performance_id, {"user_id": "cat", "seat_ids": [seat]}, None)
    assert statuses_of(services.seat_state.seat_map(performance))[seat] == "BOOKED", "never stale by default"
    assert len(reads) == 1


def test_a_booked_seat_shows_available_no_longer_than_the_cache_bound(
    services, new_performance, redis_client
) -> None:
    performance, _ = booked_db_lock_performance(services, new_performance)
    now = [1000.0]
    bound = 1.0
    seat_state = SeatStateService(
        services.seat_store,
        services.bookings,
        RedisFillLock(redis_client, services.settings.redis_key_prefix),
        map_cache_seconds=bound,
        clock=lambda: now[0],
    )
    seat = performance.sections[0].first_seat_id + 2
    assert statuses_of(seat_state.seat_map(performance))[seat] == "AVAILABLE"

    booking = services.booking_service.book(
        performance.performance_id, {"user_id": "dan", "seat_ids": [seat]}, None
    )
    assert services.seat_store.seat_states(performance.performance_id)[seat] == f"B:{booking.booking_id}"
    now[0] += bound - 0.01
    assert statuses_of(seat_state.seat_map(performance))[seat] == "AVAILABLE", "within the bound: cached"
    now[0] += 0.01
    assert statuses_of(seat_state.seat_map(performance))[seat] == "BOOKED", "at the bound: never later"


def test_a_fill_that_cannot_get_the_lock_in_time_answers_503_without_querying_mysql(
    services, new_performance, redis_client, monkeypatch
) -> None:
    performance, expected = booked_db_lock_performance(services, new_performance)
    pid = performance.performance_id
    redis_client.delete(services.seat_store.seats_key(pid))
    fill_lock = RedisFillLock(redis_client, services.settings.redis_key_prefix)
    queries: list = []
    monkeypatch.setattr(
        services.bookings, "active_seat_holders", counting(services.bookings.active_seat_holders, queries)
    )
    seat_state = SeatStateService(services.seat_store, services.bookings, fill_lock, fill_wait_seconds=0.3)
    # Another process holds the fill lock and is stuck (or died): its lease has 2 s left.
    redis_client.set(fill_lock.key(f"seats:{pid}"), "someone-else", px=2000)

    with pytest.raises(ServiceUnavailable):
        seat_state.seat_map(performance)
    assert queries == [], "the waiters do not stampede MySQL"

    # A dead holder's lease lapses: a later reader (one that waits long enough) fills the map once.
    patient = SeatStateService(services.seat_store, services.bookings, fill_lock, fill_wait_seconds=10)
    assert statuses_of(patient.seat_map(performance)) == expected
    assert len(queries) == ONE_FILL


def test_a_lost_version_counter_restarts_above_every_earlier_version(services, new_performance) -> None:
    performance, expected = booked_db_lock_performance(services, new_performance)
    before = services.seat_state.seat_map(performance)["version"]
    services.seat_store.forget_performance(performance.performance_id)  # seats and counter gone

    after = services.seat_state.seat_map(performance)
    assert after["version"] > before, "a process's rendered map of an earlier life can never match"
    assert statuses_of(after) == expected
