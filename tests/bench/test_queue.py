"""`make bench ARGS="--scenarios queue"`, small, inside `make test`: 1,000 signed-in users join a waiting room
admitting 200 a second at once and book as they are admitted (redis_async), 20 more try to book before their
turn, then the same bookings go to a twin performance without a room. One run (~60-70 s: the stack, 1,020
sign-ins, a warm-up, 5 s of admissions, two drains), two tests on it:

- what the room must never allow, asserted outright: every unadmitted attempt refused 403
  ADMISSION_REQUIRED, no booking in MySQL by a user the room never admitted nor before their admission, no
  seat twice, nothing lost, Redis == MySQL, every user admitted and booked;
- the order and the rate of admission: nobody admitted after someone who joined later (0 out of order, by
  the tickets' turns in Redis and as the clients saw it), and the rate achieved near the set one.

Tolerances of the rate, and why. Server side (the turns Redis fixed when it issued the tickets): within 5 %
of the set rate. A turn is join time + distance / rate, rounded up to the millisecond, and the queue never
runs empty here (the joins arrive at ~600/s or more, faster than 200/s), so the turns are 5 ms apart and the
span of 1,000 is exact to a millisecond or two; 5 % leaves room only for a join burst slower than the
rate on a loaded machine. Client side (the arrival of the answer that first brought each token): reported
by the bench, not asserted. Each sighting is the turn plus that user's poll lag (a poll interval plus the
read's own latency, which on a 2-core machine saturated by 1,000 readers, the joins and the bookings reached
4 s at p99), so the rate the clients see measures this machine's capacity to answer reads, not the room: it
was asserted within 50 % of the set rate until a CI box loaded by the three test lanes saw 92/s of 200/s
(46 %) while the server's turns were exact. What the room promises is asserted on the server's side.
"""

from __future__ import annotations

import pytest

from loadtests.bench import scenarios as sc
from tests.support.bench import results_of, run_bench

USERS, RATE, CRASHERS = 1_000, 200, 20
SERVER_RATE_TOLERANCE = 0.05


@pytest.fixture(scope="module")
def queue_run(tmp_path_factory: pytest.TempPathFactory) -> dict:
    out = tmp_path_factory.mktemp("queue") / "results"
    finished = run_bench(
        "queue",
        out,  # 1,000 users, 200/s, 20 crashers
        "--scenarios",
        sc.QUEUE,
        "--queue-strategies",
        "redis_async",
        "--queue-users",
        str(USERS),
        "--queue-rate",
        str(RATE),
        "--queue-crashers",
        str(CRASHERS),
        "--no-charts",
        timeout=280,
    )
    # 1: an invariant failed (the tests below say which); 2: the bench itself failed
    assert finished.returncode in (0, 1), finished.stderr[-4000:]
    runs = results_of(out)["runs"]
    assert [(r["strategy"], r["scenario"]) for r in runs] == [("redis_async", sc.QUEUE)]
    assert "## Waiting room (queue)" in (out / "report.md").read_text()
    return runs[0]


@pytest.mark.bench
@pytest.mark.timeout(300)
def test_nobody_books_without_admission_and_every_admitted_user_books_once(queue_run: dict) -> None:
    run, adm, crash, without = (
        queue_run,
        queue_run["admission"],
        queue_run["crashers"],
        queue_run["without_room"],
    )
    assert run["users"] == USERS and adm["set_rate"] == RATE
    # every user joined, was admitted (seen by the client, collected by the server) and booked
    assert adm["joined"] == adm["admitted_seen"] == adm["collected"] == USERS, adm
    assert adm["number_mismatches"] == 0, adm  # position + serving of the join's answer = Redis's number
    assert run["booking_statuses"] == {"202": USERS}, run["booking_statuses"]
    assert run["booking_final"] == {"CONFIRMED": USERS}, run["booking_final"]
    assert run["answered"] == run["requests"], run["errors_detail"]
    # the unadmitted: refused, every attempt, and never admitted nor booked
    assert crash["crashers"] == CRASHERS and crash["attempts"] == 2 * CRASHERS, crash
    assert crash["refused_403"] == crash["attempts"] and crash["accepted"] == 0, crash
    assert crash["admitted"] == 0, crash
    assert run["bookings_without_admission"] == 0, run["bookings_without_admission_sample"]
    assert run["bookings_before_admission"] == 0 and run["bookings_by_crashers"] == 0
    assert run["bookings_in_mysql"] == USERS
    # the audit of both performances
    assert run["double_bookings"] == 0 and run["lost_bookings"] == 0 and run["drift"] == 0, run["audit"]
    assert run["unanswered_bookings"] == 0, run["audit"]
    assert without["double_bookings"] == 0 and without["lost_bookings"] == 0, without["audit"]
    assert without["drift"] == 0 and without["answered"] == without["requests"] == USERS, without["audit"]
    assert without["success"] == USERS, without["status_counts"]
    # the client saw nobody admitted out of order either (a proof from outside, see waiting_room.py)
    assert adm["out_of_order_client"] == 0, adm
    assert run["booking_ms"] and without["latency_ms"], "both booking latencies measured"


@pytest.mark.bench
@pytest.mark.timeout(300)
def test_admission_follows_join_order_at_the_set_rate(queue_run: dict) -> None:
    adm = queue_run["admission"]
    assert adm["out_of_order_server"] == 0 and adm["turn_inversions"] == 0, adm
    assert abs(adm["server_rate"] / RATE - 1) <= SERVER_RATE_TOLERANCE, adm
    assert adm["client_rate"], "the clients' rate is measured (reported, see the module's docstring)"


def test_out_of_order_counts_the_users_someone_who_joined_later_was_admitted_before() -> None:
    from loadtests.bench.waiting_room import _rate, out_of_order

    in_order = [(n, 10.0 * n, 10.0 * n) for n in range(1, 6)]
    assert out_of_order(in_order) == 0
    assert out_of_order([(1, 5.0, 5.0), (2, 5.0, 5.0)]) == 0  # a tie is not out of order
    # number 2 turned before number 1, number 5 before 3 and 4: three users admitted after a later joiner
    assert (
        out_of_order([(1, 20.0, 20.0), (2, 10.0, 10.0), (3, 40.0, 40.0), (4, 45.0, 45.0), (5, 30.0, 30.0)])
        == 3
    )
    # client side: told "not yet" (read sent at 15) after number 2 was seen admitted (at 12): proven
    assert out_of_order([(1, 15.0, 16.0), (2, 3.0, 12.0)]) == 1
    assert out_of_order([(1, 11.0, 16.0), (2, 3.0, 12.0)]) == 0  # not proven: its read went before
    assert _rate([0.0, 0.5, 1.0]) == 2.0 and _rate([1.0]) is None
