"""`make bench ARGS="--scenarios hold-and-abandon"`, small, inside `make test`: one synchronous and one
asynchronous strategy sell a 200-seat performance out while half the holders walk away from 3-second holds.
Asserted: the audit held (every seat sold exactly once, nobody over MAX_SEATS_PER_USER, nothing lost or
undecided, Redis == MySQL), and holds did expire and their seats were sold again — the scenario's point.

Not part of test_bench_smoke.py's run: selling out takes hold rounds (the unsold share roughly halves per
round), ~20-40 s per strategy even at this size, and that test already spends ~4 of its 5 minutes."""

from __future__ import annotations

from pathlib import Path

import pytest

from loadtests.bench import scenarios as sc
from tests.support.bench import results_of, run_bench

STRATEGIES = ("db_lock", "redis_async")
IDENTITY_REFUSALS = {"401", "403", "404", "429"}


@pytest.mark.bench
@pytest.mark.timeout(420)
def test_held_seats_that_were_walked_away_from_are_sold_again_exactly_once(tmp_path: Path) -> None:
    out = tmp_path / "results"
    finished = run_bench(
        "holds",
        out,
        # 2 x 5 x 20 = 200 seats, a pool of 1,000 people, 16 virtual users
        "--scenarios",
        sc.HOLD_AND_ABANDON,
        "--strategies",
        ",".join(STRATEGIES),
        "--hold-seconds",
        "3",
        "--hold-timeout",
        "180",
        timeout=400,
    )
    assert finished.returncode == 0, finished.stderr[-4000:]

    results = results_of(out)
    runs = results["runs"]
    assert [(r["strategy"], r["scenario"]) for r in runs] == [(s, sc.HOLD_AND_ABANDON) for s in STRATEGIES]
    for run in runs:
        name = run["strategy"]
        assert run["invariants_ok"], (name, run["audit"])
        assert run["sold_out"] and run["seats_sold"] == run["seats"] == 200, name
        assert run["double_bookings"] == 0 and run["lost_bookings"] == 0, (name, run["audit"])
        assert run["drift"] == 0, (name, run["audit"])
        assert run["over_limit_users"] == 0 and run["most_seats_per_user"] <= run["max_seats_per_user"], name
        assert run["hold_seconds"] == 3
        # the point of the scenario: holds ran out and their seats went to someone who paid
        assert run["walked_away"] > 0 and run["holds_expired"] > 0, name
        assert run["seats_resold"] > 0 and run["holds_resold"] > 0, name
        assert run["confirmed"] > 0 and run["audit"]["told_confirmed_not_confirmed"] == 0, name
        assert run["answered"] == run["requests"], (name, run["errors_detail"])
        # Every hold, poll and confirm made as its person: not refused a token (401), not told another's
        # booking does not exist (404), not rate limited (429).
        refused = {
            call: IDENTITY_REFUSALS & counts.keys() for call, counts in run["status_counts_by_call"].items()
        }
        assert not any(refused.values()), (name, refused, run.get("error_samples"))
        assert run["sold_out_seconds"] > 0, name
        assert {"hold", "confirm"} <= {k for k, v in run["latency_ms_by_kind"].items() if v}, name
    assert runs[1]["latency_ms_by_kind"]["poll"], "redis_async answers 202: its holds are polled"
    report = (out / "report.md").read_text()
    assert "## Hold and abandon" in report and "holds.png" in report
    assert (out / "holds.png").exists()
