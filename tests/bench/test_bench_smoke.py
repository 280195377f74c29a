"""`make bench-smoke` inside `make test`: the whole benchmark harness, small, on a stack of its own (its own
LocalStack, database, Redis keys, queues, ports; see loadtests/bench/stack.py), asserting only the invariants
every run must keep, never a timing: no seat sold twice, no accepted booking lost, Redis and MySQL agree after
the drain, every request answered, the counts add up; and for the crowd, every viewer's read answered without
an error, deltas received, and every viewer's copy of the map equal to the server's in the end."""

from __future__ import annotations

from pathlib import Path

import pytest

from loadtests.bench import scenarios as sc
from tests.support.bench import results_of, run_bench

IDENTITY_REFUSALS = {"401", "403", "404", "429"}


@pytest.mark.bench
@pytest.mark.timeout(300)
def test_smoke_bench_keeps_every_invariant(tmp_path: Path) -> None:
    out = tmp_path / "results"
    finished = run_bench(
        "smoke",
        out,
        # `make bench-smoke` sends 300 per burst; here 100 (the suite's time budget): stream_state decides
        # ~35 requests/s on LocalStack's Kinesis, and all of a small burst reaches it.
        "--requests",
        "100",
        "--mixed-seconds",
        "1",
        "--drain-requests",
        "50",
        # The crowd small: 20 viewers polling every 0.5 s (its warm-up and tail are counted in intervals).
        "--viewers",
        "20",
        "--viewer-interval",
        "0.5",
        timeout=280,
    )
    assert finished.returncode == 0, finished.stderr[-4000:]

    results = results_of(out)
    runs = results["runs"]
    assert {(r["strategy"], r["scenario"]) for r in runs} == {(None, scenario) for scenario in sc.ONCE} | {
        (strategy, scenario)
        for strategy in sc.STRATEGIES
        for scenario in sc.PER_STRATEGY
        if scenario != sc.DRAIN or strategy in sc.ASYNC_STRATEGIES
    }
    for run in runs:
        name = f"{run['strategy']} {run['scenario']}"
        assert run["double_bookings"] == 0, name
        assert run["lost_bookings"] == 0, name
        assert run["drift"] == 0, (name, run.get("audit"))
        assert run["answered"] == run["requests"], (name, run["errors_detail"])
        assert run["success"] + run["rejected"] + run["errors"] + run["lost_bookings"] == run["requests"], (
            name
        )
        assert run["invariants_ok"], name
        # Every booking made as its signed-in user: a token refused (401), a body's user_id not the token's
        # (403), a booking read as a stranger (404) or a rate limit (429) would pass the counts above as
        # mere errors.
        assert not IDENTITY_REFUSALS & run["status_counts"].keys(), (name, run.get("error_samples"))
        if run["scenario"] in (*sc.ONCE, sc.HOT_SEAT, sc.HOT_SECTION, *sc.CROWDS):
            assert run["requests"] == results["profile"]["requests"], name
        if run["scenario"] in sc.READS:  # the map, gzipped, every time
            assert run["success"] == run["requests"] and run["bytes_per_response"] > 0, name
        if run["scenario"] == sc.CROWD:
            viewers = run["viewers"]
            assert viewers["viewers"] == 20, name
            assert viewers["errors"] == 0 and viewers["unanswered"] == 0, (name, viewers["status_counts"])
            assert viewers["by_kind"]["compact"].get("200", 0) >= 20, (name, viewers["by_kind"])
            assert viewers["deltas"] > 0 and viewers["changes_received"] > 0, (name, viewers["by_kind"])
            assert viewers["converged"] == 20, (name, viewers["diverged_sample"])
        if run["scenario"] == sc.HOT_SEAT:  # one seat: one winner (none only if its request failed)
            assert run["success"] == 1 or (run["success"] == 0 and run["errors"] > 0), name
        if run["strategy"] in sc.ASYNC_STRATEGIES and run.get("accepted"):
            assert run["drained"], name
    assert (out / "report.md").exists()
    charts = ("latency.png", "throughput.png", "confirm.png", "reads.png")
    assert all((out / name).exists() for name in charts)
