"""`make test`'s pytest: the suite in three lanes at once on the 2-core machines it runs on.

Why lanes and not pytest-xdist: every test session already has a world of its own (its database, Redis key
prefix, moto server, LocalStack, ports: tests/conftest.py), so two sessions side by side never meet; a
session per lane starts each emulator once, where xdist would start the session fixtures in every worker. The
fault lane spends most of its time waiting for outages to end and consumers to catch up, which is when the
other lanes' CPU-heavy races run: two fault lanes (one per fault file, each with its own MariaDB and Redis
servers) and one of everything else keep both cores busy.

    python -m tests.lanes [pytest options]      # e.g. -x, -k name; every lane gets them

Each lane's output goes to a log file and is printed whole when the lane ends (interleaved progress dots
would say nothing); the exit status is the first failing lane's, else 0.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Balanced by measured durations (each lane prints its slowest 15). Run as fault scenarios / chaos + bench +
# unit / integration + e2e + browser, the lanes took 183 / 210 / 355 s; e2e + browser alone ~130 s.
LANES = {
    "faults": [
        "tests/faults/test_fault_scenarios.py",
        "tests/faults/test_chaos_cluster.py",  # ~55 s, on a Redis Cluster of its own
        "tests/e2e",
        "tests/browser",
    ],
    # The worker-process tests (~50 s) run beside the chaos file: with them, the integration lane took 495 s
    # against the others' ~395 s (issue 16's first full run).
    "chaos": [
        "tests/faults/test_chaos.py",
        "tests/bench",
        "tests/unit",
        "tests/integration/test_worker_processes.py",
    ],
    "servers": ["tests/integration", "--ignore=tests/integration/test_worker_processes.py"],
}


@dataclass
class Lane:
    name: str
    paths: list[str]
    log: Path
    process: subprocess.Popen
    started: float
    ended: float | None = None

    def finished(self) -> bool:
        if self.ended is None and self.process.poll() is not None:
            self.ended = time.monotonic()
        return self.ended is not None


def start(name: str, paths: list[str], options: list[str], logs: Path) -> Lane:
    log = logs / f"{name}.log"
    command = [
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        "--durations=15",
        *options,
        *paths,
    ]
    with log.open("wb") as output:
        process = subprocess.Popen(command, cwd=ROOT, stdout=output, stderr=subprocess.STDOUT)
    return Lane(name, paths, log, process, time.monotonic())


def report(lane: Lane) -> None:
    print(
        f"\n===== lane {lane.name} ({' '.join(lane.paths)}): exit {lane.process.returncode}, "
        f"{lane.ended - lane.started:.0f} s =====",
        flush=True,
    )
    sys.stdout.write(lane.log.read_text(errors="replace"))
    sys.stdout.flush()


def main(options: list[str]) -> int:
    logs = Path(tempfile.mkdtemp(prefix="seat-booking-lanes-"))
    began = time.monotonic()
    lanes = [start(name, paths, options, logs) for name, paths in LANES.items()]
    print(f"lanes: {', '.join(lane.name for lane in lanes)} (logs in {logs})", flush=True)
    waiting = list(lanes)
    try:
        while waiting:
            for lane in [lane for lane in waiting if lane.finished()]:
                report(lane)
                waiting.remove(lane)
            time.sleep(0.5)
    except KeyboardInterrupt:
        for lane in waiting:
            lane.process.terminate()
        raise
    codes = [lane.process.returncode for lane in lanes]
    print(
        f"\nlanes done in {time.monotonic() - began:.0f} s: "
        + ", ".join(
            f"{lane.name} {lane.ended - lane.started:.0f} s (exit {lane.process.returncode})"
            for lane in lanes
        ),
        flush=True,
    )
    return next((code for code in codes if code != 0), 0)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
