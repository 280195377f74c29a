"""`make bench --smoke` as the bench tests run it: a process of its own, isolated from every other run on the
machine (a database, a Redis key prefix and a stack name of this test process, the database dropped after),
without the emulator's ceilings (measurements, not invariants: `make bench-smoke` runs them) or progress."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run_bench(name: str, out: Path, *args: str, timeout: float) -> subprocess.CompletedProcess:
    """`--smoke --out out *args`, finished (its output captured)."""
    isolated = f"{name}_{os.getpid()}"
    command = [
        sys.executable,
        "-m",
        "loadtests.bench",
        "--smoke",
        "--out",
        str(out),
        *args,
        "--no-ceilings",
        "--no-progress",
        "--database",
        f"booking_bench_{isolated}",
        "--key-prefix",
        f"bench-{isolated.replace('_', '-')}",
        "--name",
        f"bench-{isolated.replace('_', '-')}",
        "--drop-database",
    ]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def results_of(out: Path) -> dict:
    """The run's results.json."""
    return json.loads((out / "results.json").read_text())
