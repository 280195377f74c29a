"""hold-and-abandon in the bench's plan and report (loadtests/bench): on request only, last, per strategy;
its own table in report.md, never a row of the comparison table."""

from __future__ import annotations

import copy

from loadtests.bench import report
from loadtests.bench import scenarios as sc
from loadtests.bench.runner import FULL, SMOKE, Plan

RUN = {
    "strategy": "redis_async",
    "scenario": sc.HOLD_AND_ABANDON,
    "seats": 2_000,
    "users": 10_000,
    "concurrency": 64,
    "hold_seconds": 20.0,
    "pause_seconds": 0.25,
    "confirm_ratio": 0.5,
    "sold_out": True,
    "sold_out_seconds": 231.4,
    "seats_sold": 2_000,
    "attempts": 40_000,
    "holds_made": 1_700,
    "confirmed": 800,
    "walked_away": 880,
    "confirm_too_late": 20,
    "holds_expired": 900,
    "seats_resold": 1_500,
    "holds_resold": 850,
    "refusals": {"SEAT_UNAVAILABLE": 38_000, "USER_LIMIT": 3},
    "latency_ms_by_kind": {
        "hold": {"p50": 12.0, "p95": 40.0, "p99": 95.0, "max": 300.0},
        "poll": {"p50": 6.0, "p95": 20.0, "p99": 50.0, "max": 90.0},
        "confirm": {"p50": 15.0, "p95": 50.0, "p99": 120.0, "max": 200.0},
    },
    "hold_to_held_ms": {"p50": 300.0, "p95": 800.0, "p99": 1_200.0, "max": 2_000.0},
    "errors": 0,
    "requests": 60_000,
    "answered": 60_000,
    "double_bookings": 0,
    "lost_bookings": 0,
    "drift": 0,
    "over_limit_users": 0,
    "unfinished": 0,
    "invariants_ok": True,
}


def test_hold_and_abandon_is_selectable_but_not_in_the_default_bench() -> None:
    assert sc.HOLD_AND_ABANDON not in sc.SCENARIOS
    assert sc.HOLD_AND_ABANDON in sc.ALL_SCENARIOS
    assert all(run[1] != sc.HOLD_AND_ABANDON for run in Plan(FULL).runs())
    plan = Plan(SMOKE, strategies=("db_lock", "stream_state"), scenarios=(sc.HOT_SEAT, sc.HOLD_AND_ABANDON))
    assert plan.runs() == [
        ("db_lock", sc.HOT_SEAT),
        ("stream_state", sc.HOT_SEAT),
        ("db_lock", sc.HOLD_AND_ABANDON),
        ("stream_state", sc.HOLD_AND_ABANDON),
    ]


def test_the_full_run_sells_2000_seats_with_20_second_holds_and_the_smoke_run_less() -> None:
    assert FULL.hold_shape.seats == 2_000 and FULL.hold_shape.users == 10_000 and FULL.hold_seconds == 20
    assert SMOKE.hold_shape.seats == 200 and SMOKE.hold_seconds < FULL.hold_seconds
    body = sc.event_body(sc.HOLD_AND_ABANDON, "db_lock", FULL.hold_shape)
    assert sum(s["rows"] * s["seats_per_row"] for s in body["sections"]) == 2_000
    assert body["performances"][0]["strategy"] == "db_lock"


def test_the_hold_table_has_a_row_per_strategy_and_says_what_failed() -> None:
    failed = {
        **copy.deepcopy(RUN),
        "strategy": "stream_state",
        "sold_out": False,
        "seats_sold": 1_990,
        "drift": 2,
        "invariants_ok": False,
    }
    results = {"runs": [RUN, failed]}
    table = report.hold_table(results)
    rows = table.splitlines()[2:]
    assert len(rows) == 2
    assert rows[0].startswith("| `redis_async` | 2,000 | 20 | 231.4 | 40,000 |")
    assert "38,000 SEAT_UNAVAILABLE, 3 USER_LIMIT" in rows[0] and "| 12 / 95 |" in rows[0]
    assert rows[0].endswith("| ok |")
    assert "**not sold out**" in rows[1]
    assert "**FAILED**: 1,990 of 2,000 sold, drift 2" in rows[1]


def test_hold_runs_stay_out_of_the_comparison_table() -> None:
    results = {"runs": [RUN]}
    assert report.comparison_table(results).count("\n") == 1  # the header and its rule only
