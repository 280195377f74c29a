"""`stream_state` with real processes: the worker (the local event-source mappings running the real Kinesis
handlers) is killed with SIGKILL in the middle of a run and restarted on an empty ledger directory, as a
new Lambda container would be. It must rebuild the ledger from the changelog and go on without selling a
seat twice or flipping a decision already made."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from tests.integration.test_races import audit, race, split
from tests.support.waiting import wait_for

PROJECT_DIR = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.race, pytest.mark.timeout(240)]


def start_worker(ledger_dir: Path, checkpoint_file: str, log_file: Path) -> subprocess.Popen:
    env = {**os.environ, "LEDGER_DIR": str(ledger_dir)}  # the test process holds the usual directory open
    with log_file.open("ab") as log:
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "infra.local.worker",
                "--stage",
                "local",  # the test environment is already set and wins over the stage's values
                "--processes",
                "1",  # the one process this test freezes and kills (several: test_worker_processes.py)
                "--stream-checkpoints",
                checkpoint_file,
                "--function-name-prefix",
                "seat-booking-test",  # the checkpoints the in-process drains have kept
            ],
            cwd=PROJECT_DIR,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )


def test_killed_processor_rebuilds_from_the_changelog_and_sells_no_seat_twice(
    services, new_performance, drain, sql, stream_checkpoints, tmp_path
) -> None:
    drain()  # start from a quiet stream: the worker resumes at the run's checkpoints
    performance = new_performance(strategy="stream_state", rows=2, seats_per_row=10)
    pid, first = performance["performance_id"], performance["sections"][0]["first_seat_id"]
    rng = random.Random(20261125)
    book = services.booking_service.book

    def wave(size: int, tag: str) -> list:
        wanted = [rng.sample(range(first, first + 20), rng.randint(1, 3)) for _ in range(size)]
        attempts = [
            lambda i=i: book(pid, {"user_id": f"{tag}-{i}", "seat_ids": wanted[i]}, None) for i in range(size)
        ]
        accepted, _ = split(race(attempts)[0])
        return accepted

    def stored() -> dict[str, str]:
        return dict(sql("SELECT booking_id, status FROM bookings WHERE performance_id = %s", pid))

    def decided() -> dict[str, str]:  # every accepted booking is in MySQL from its 202 on, PENDING
        return {booking: status for booking, status in stored().items() if status != "PENDING"}

    accepted = wave(400, "before")
    log_file = tmp_path / "worker.log"
    checkpoint_file = str(stream_checkpoints.path)

    worker = start_worker(tmp_path / "ledger-a", checkpoint_file, log_file)
    try:
        wait_for(lambda: len(decided()) >= 5, 90, "the first decisions to reach MySQL")
    finally:
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=10)
    at_kill = decided()
    assert len(at_kill) < len(accepted), "the worker was meant to die mid-run, not after it"

    accepted += wave(150, "while-down")
    restarted = start_worker(tmp_path / "ledger-b", checkpoint_file, log_file)  # an empty directory
    try:
        wait_for(
            lambda: len(s := stored()) == len(accepted) and "PENDING" not in s.values(),
            120,
            "every accepted booking to become final after the restart",
        )
    finally:
        restarted.send_signal(signal.SIGTERM)
        restarted.wait(timeout=20)
    drain()  # anything the stopped worker left (e.g. a release) is finished in-process

    final = audit(sql, services, "stream_state", pid, accepted)
    flipped = {b: (s, final[b]) for b, s in at_kill.items() if s != final[b]}
    assert flipped == {}, "a decision stored before the kill changed after the rebuild"
    assert "seat ledger: rebuilt" in log_file.read_text(), "the restarted worker replayed the changelog"
    print(
        f"\nstream_state kill/restart: {len(accepted)} accepted, {len(at_kill)} final at the kill,"
        f" final {dict(Counter(final.values()))}"
    )
