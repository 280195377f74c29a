"""`make bench-smoke` inside `make test`: the whole benchmark harness, small, on a stack of its own (its own
LocalStack, database, Redis keys, queues, ports; see loadtests/bench/stack.py), asserting only the invariants
every run must keep, never a timing: no seat sold twice, no accepted booking lost, Redis and MySQL agree after
the drain, every request answered, the counts add up."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from loadtests.bench import scenarios as sc

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.bench
@pytest.mark.timeout(300)
def test_smoke_bench_keeps_every_invariant(tmp_path: Path) -> None:
    run_id = os.getpid()
    out = tmp_path / "results"
    command = [
        sys.executable,
        "-m",
        "loadtests.bench",
        "--smoke",
        "--out",
        str(out),
        # `make bench-smoke` sends 300 per burst; here 100 (the suite's time budget): stream_state decides
        # ~35 requests/s on LocalStack's Kinesis, and all of a small burst reaches it.
        "--requests",
        "100",
        "--mixed-seconds",
        "1",
        "--drain-requests",
        "50",
        "--no-ceilings",  # measurements, not invariants: `make bench-smoke` runs them
        "--no-progress",
        "--database",
        f"booking_bench_smoke_{run_id}",
        "--key-prefix",
        f"bench-smoke-{run_id}",
        "--name",
        f"bench-smoke-{run_id}",
        "--drop-database",
    ]
    finished = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=280)
    assert finished.returncode == 0, finished.stderr[-4000:]

    results = json.loads((out / "results.json").read_text())
    runs = results["runs"]
    assert {(r["strategy"], r["scenario"]) for r in runs} == {(None, sc.BASELINE)} | {
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
        if run["scenario"] in (sc.BASELINE, sc.HOT_SEAT, sc.HOT_SECTION):
            assert run["requests"] == results["profile"]["requests"], name
        if run["scenario"] == sc.HOT_SEAT:  # one seat: one winner (none only if its request failed)
            assert run["success"] == 1 or (run["success"] == 0 and run["errors"] > 0), name
        if run["strategy"] in sc.ASYNC_STRATEGIES and run.get("accepted"):
            assert run["drained"], name
    assert (out / "report.md").exists()
    assert all((out / name).exists() for name in ("latency.png", "throughput.png", "confirm.png"))
