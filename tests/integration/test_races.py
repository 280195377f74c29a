"""Real races: hundreds of threads hit real Redis, SQS (moto) and MariaDB at once, then the database is
audited. Figures are printed (pytest -s) for the closing notes; only correctness is asserted."""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from collections.abc import Callable

import pytest

from chalicelib.domain.errors import SeatUnavailable
from chalicelib.domain.models import BookingStatus

pytestmark = pytest.mark.race


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


def audit(sql, services, performance_id: int, accepted: list) -> None:
    """The invariants of ../shared/API.md, checked in MySQL and against the Redis seat map."""
    double = sql(
        "SELECT seat_id, COUNT(*) FROM booking_seats WHERE performance_id = %s AND active = 1"
        " GROUP BY seat_id HAVING COUNT(*) > 1",
        performance_id,
    )
    assert double == [], f"double-booked seats: {double}"
    stored = dict(sql("SELECT booking_id, status FROM bookings WHERE performance_id = %s", performance_id))
    for booking in accepted:
        assert stored.get(booking.booking_id) == "CONFIRMED", (
            f"accepted booking {booking.booking_id} not final"
        )
    assert len(stored) == len(accepted), "every stored booking was an accepted one"
    active = dict(
        sql(
            "SELECT seat_id, booking_id FROM booking_seats WHERE performance_id = %s AND active = 1",
            performance_id,
        )
    )
    assert active == {seat: b.booking_id for b in accepted for seat in b.seat_ids}
    states = services.seat_store.seat_states(performance_id)
    redis_booked = {seat: state[2:] for seat, state in states.items() if state != "0"}
    assert all(state.startswith("B:") for state in states.values() if state != "0"), (
        "holds left after draining"
    )
    assert redis_booked == active, "the Redis seat map and MySQL disagree"


def test_500_threads_for_one_seat_sell_it_once(services, new_performance, drain, sql) -> None:
    performance = new_performance(rows=1, seats_per_row=10)
    pid, seat = performance["performance_id"], performance["sections"][0]["first_seat_id"]
    book = services.booking_service.book
    attempts = [lambda i=i: book(pid, {"user_id": f"user-{i}", "seat_ids": [seat]}, None) for i in range(500)]

    outcomes, seconds = race(attempts)

    accepted = [o for o in outcomes if not isinstance(o, Exception)]
    kinds = Counter(type(o).__name__ for o in outcomes)
    print(f"\nhot seat, 500 threads: {seconds:.2f} s, outcomes {dict(kinds)}")
    assert len(accepted) == 1 and accepted[0].status is BookingStatus.PENDING
    assert kinds["SeatUnavailable"] == 499, f"every loser gets a clear 'taken', not an error: {kinds}"
    drain()
    audit(sql, services, pid, accepted)


def test_200_overlapping_multi_seat_bookings_never_share_a_seat(
    services, new_performance, drain, sql
) -> None:
    performance = new_performance(rows=2, seats_per_row=10)
    pid, first = performance["performance_id"], performance["sections"][0]["first_seat_id"]
    rng = random.Random(20261124)
    wanted = [rng.sample(range(first, first + 20), rng.randint(1, 4)) for _ in range(200)]
    book = services.booking_service.book
    attempts = [
        lambda i=i: book(pid, {"user_id": f"user-{i}", "seat_ids": wanted[i]}, None) for i in range(200)
    ]

    outcomes, seconds = race(attempts)

    accepted = [o for o in outcomes if not isinstance(o, Exception)]
    refused = [o for o in outcomes if isinstance(o, SeatUnavailable)]
    print(
        f"\noverlapping sets, 200 threads: {seconds:.2f} s, {len(accepted)} accepted, {len(refused)} refused"
    )
    assert len(accepted) + len(refused) == 200, [o for o in outcomes if isinstance(o, Exception)][:3]
    held = [seat for booking in accepted for seat in booking.seat_ids]
    assert len(held) == len(set(held)), "two accepted bookings share a seat"
    for refusal in refused:
        assert set(refusal.seat_ids) <= set(held), "a refusal names only seats that really were taken"
    drain()
    audit(sql, services, pid, accepted)
