"""Real races, for every strategy: hundreds of threads hit real Redis, SQS (moto) and MariaDB at once, the
queues are drained, then MySQL and the Redis seat map are audited against the contract's invariants.
Figures are printed (pytest -s) for the closing notes; only correctness is asserted."""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from collections.abc import Callable

import pytest

from chalicelib.domain.errors import SeatUnavailable
from chalicelib.domain.models import Booking

pytestmark = pytest.mark.race
STRATEGIES = ["db_lock", "redis_lock", "redis_async", "fifo_partition", "stream_state"]
DECIDED_IN_LINE = {"fifo_partition", "stream_state"}  # accept first (202), decide later in order
SYNCHRONOUS = {"db_lock", "redis_lock"}


def race(attempts: list[Callable[[], object]]) -> tuple[list[object], float]:
    """Run every attempt in its own thread, all released together by a barrier; -> (outcomes, seconds)."""
    outcomes: list[object] = [None] * len(attempts)
    barrier = threading.Barrier(len(attempts) + 1)

    def run(index: int) -> None:
        barrier.wait()
        try:
            outcomes[index] = attempts[index]()
        except Exception as exc:
            outcomes[index] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(attempts))]
    for thread in threads:
        thread.start()
    barrier.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    return outcomes, time.perf_counter() - started


def split(outcomes: list[object]) -> tuple[list[Booking], list[SeatUnavailable]]:
    accepted = [o for o in outcomes if isinstance(o, Booking)]
    refused = [o for o in outcomes if isinstance(o, SeatUnavailable)]
    errors = [o for o in outcomes if not isinstance(o, Booking | SeatUnavailable)]
    causes = [f"{e!r} <- {e.__cause__!r}" for e in errors[:3]]
    assert errors == [], f"every loser gets a clear 'taken', never an error: {causes}"
    return accepted, refused


def audit(sql, services, strategy: str, performance_id: int, accepted: list[Booking]) -> dict[str, str]:
    """The invariants of docs/api.md in MySQL and the Redis seat map; -> booking id -> final status."""
    double = sql(
        "SELECT seat_id, COUNT(*) FROM booking_seats WHERE performance_id = %s AND active = 1"
        " GROUP BY seat_id HAVING COUNT(*) > 1",
        performance_id,
    )
    assert double == [], f"double-booked seats: {double}"
    stored = dict(sql("SELECT booking_id, status FROM bookings WHERE performance_id = %s", performance_id))
    assert set(stored) == {b.booking_id for b in accepted}, "every accepted booking is stored, nothing else"
    assert "PENDING" not in stored.values(), "every accepted booking reached a final status"
    if strategy in SYNCHRONOUS or strategy == "redis_async":
        # These decide at request time: an accepted booking is a won booking.
        assert set(stored.values()) == {"CONFIRMED"}
    confirmed = {b.booking_id: b.seat_ids for b in accepted if stored[b.booking_id] == "CONFIRMED"}
    active = dict(
        sql(
            "SELECT seat_id, booking_id FROM booking_seats WHERE performance_id = %s AND active = 1",
            performance_id,
        )
    )
    assert active == {seat: booking for booking, seats in confirmed.items() for seat in seats}
    states = services.seat_store.seat_states(performance_id)
    assert {seat: state for seat, state in states.items() if state != "0"} == {
        seat: f"B:{booking}" for seat, booking in active.items()
    }, "the Redis seat map and MySQL disagree"
    return stored


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_500_threads_for_one_seat_sell_it_once(strategy, services, new_performance, drain, sql) -> None:
    performance = new_performance(strategy=strategy, rows=1, seats_per_row=10)
    pid, seat = performance["performance_id"], performance["sections"][0]["first_seat_id"]
    book = services.booking_service.book
    attempts = [lambda i=i: book(pid, {"user_id": f"user-{i}", "seat_ids": [seat]}, None) for i in range(500)]

    outcomes, seconds = race(attempts)
    accepted, refused = split(outcomes)
    started = time.perf_counter()
    drain()
    final = audit(sql, services, strategy, pid, accepted)

    print(
        f"\n{strategy:15} hot seat, 500 threads: {seconds:.2f} s; {len(accepted)} accepted,"
        f" {len(refused)} refused at once; drained in {time.perf_counter() - started:.2f} s;"
        f" final {dict(Counter(final.values()))}"
    )
    assert Counter(final.values())["CONFIRMED"] == 1
    assert len(accepted) + len(refused) == 500
    if strategy not in DECIDED_IN_LINE:
        assert len(accepted) == 1, "only the in-line strategies accept first and decide later"


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_200_overlapping_multi_seat_bookings_never_share_a_seat(
    strategy, services, new_performance, drain, sql
) -> None:
    performance = new_performance(strategy=strategy, rows=2, seats_per_row=10)
    pid, first = performance["performance_id"], performance["sections"][0]["first_seat_id"]
    rng = random.Random(20261124)
    wanted = [rng.sample(range(first, first + 20), rng.randint(1, 4)) for _ in range(200)]
    book = services.booking_service.book
    attempts = [
        lambda i=i: book(pid, {"user_id": f"user-{i}", "seat_ids": wanted[i]}, None) for i in range(200)
    ]

    outcomes, seconds = race(attempts)
    accepted, refused = split(outcomes)
    drain()
    final = audit(sql, services, strategy, pid, accepted)

    winners = [b for b in accepted if final[b.booking_id] == "CONFIRMED"]
    held = [seat for booking in winners for seat in booking.seat_ids]
    print(
        f"\n{strategy:15} overlapping sets, 200 threads: {seconds:.2f} s; {len(accepted)} accepted,"
        f" {len(refused)} refused at once; final {dict(Counter(final.values()))}; {len(held)}/20 seats sold"
    )
    assert len(accepted) + len(refused) == 200
    assert len(held) == len(set(held)), "two winning bookings share a seat"
    if strategy not in SYNCHRONOUS:  # lock strategies also refuse seats only locked, perhaps by a loser
        for refusal in refused:
            assert set(refusal.seat_ids) <= set(held), "a refusal names only seats that really were taken"


@pytest.fixture()
def refusal_memory(services, monkeypatch):
    """The memory of seats just refused (services/recently_taken.py) on, as every deployment runs it; the
    test environment keeps it off (tests/conftest.py)."""
    monkeypatch.setattr(services.recently_taken, "ttl_seconds", 0.25)
    return services.recently_taken


@pytest.mark.parametrize("strategy", sorted(SYNCHRONOUS | {"redis_async"}))
def test_500_threads_for_one_seat_with_the_refusal_memory_on_sell_it_once(
    strategy, services, new_performance, drain, sql, refusal_memory, monkeypatch
) -> None:
    """The same hot seat with refusals answered from memory once a thread has been refused: still one
    winner, every other thread a clear 'taken', MySQL and the map in line. How many asked the strategy
    depends on how the threads were scheduled; it is printed, not asserted."""
    strategy_object = services.strategies[strategy]
    asked = Counter()
    book = strategy_object.book
    monkeypatch.setattr(strategy_object, "book", lambda request: asked.update(["asked"]) or book(request))
    test_500_threads_for_one_seat_sell_it_once(strategy, services, new_performance, drain, sql)
    print(f"{strategy:15} with the refusal memory: {asked['asked']} of 500 asked the strategy")
