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
import threading
from collections import Counter
from pathlib import Path

import pytest

from chalicelib.domain.messages import parse_stream_command
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


def test_concurrent_requests_share_put_records_calls_and_every_202_is_in_the_stream_once(
    services, new_performance, drain, sql, monkeypatch
) -> None:
    """The request path's batching on the emulator (moto): 300 requests at once over one section's 40 seats.
    The first PutRecords call is held until several records wait behind it (a hook, not a sleep), so calls
    are shared for sure; every 202 must then be in the request stream exactly once, and the processor's
    decisions reach the changelog in a few PutRecords calls, not one per decision."""
    drain()  # a quiet stream: this test's records are the only new ones
    performance = new_performance(strategy="stream_state", rows=2, seats_per_row=20)
    pid, first = performance["performance_id"], performance["sections"][0]["first_seat_id"]
    requests, changelog = services.request_stream.writer, services.ledger._changelog.writer
    state = requests._state
    real_put_records = requests._kinesis.put_records
    held = threading.Event()

    def put_records(**kwargs):
        if not held.is_set():  # the first call: wait (at most 30 s) until others queue behind it
            held.set()
            with state.cond:
                state.cond.wait_for(lambda: len(state.queue) >= 20, timeout=30)
        return real_put_records(**kwargs)

    monkeypatch.setattr(requests, "_kinesis", _Calls(requests._kinesis, put_records))
    rng = random.Random(16)
    wanted = [rng.sample(range(first, first + 40), rng.randint(1, 3)) for _ in range(300)]
    book = services.booking_service.book
    calls_before = requests.calls
    attempts = [lambda i=i: book(pid, {"user_id": f"u{i}", "seat_ids": wanted[i]}, None) for i in range(300)]
    accepted, _ = split(race(attempts)[0])
    calls = requests.calls - calls_before
    assert len(accepted) == 300, "the map shows nothing taken before the ledger decides: all wait in line"
    assert calls < len(accepted), f"{calls} PutRecords calls for {len(accepted)} records: none shared"

    in_stream = Counter(
        command.booking_id
        for _, _, data in services.request_stream.read_since({})
        if (command := parse_stream_command(data)).performance_id == pid
    )
    assert in_stream == Counter(b.booking_id for b in accepted), "every 202 in the stream, exactly once"

    changelog_before = changelog.calls
    drain()
    decisions = changelog.calls - changelog_before
    final = audit(sql, services, "stream_state", pid, accepted)
    assert decisions <= len(accepted) // 10, f"{decisions} changelog calls for {len(accepted)} decisions"
    print(
        f"\nstream_state batching: {len(accepted)} requests in {calls} PutRecords calls, their decisions in"
        f" {decisions}; final {dict(Counter(final.values()))}"
    )


class _Calls:
    """A boto3 client whose put_records is replaced; everything else is the client's own."""

    def __init__(self, client, put_records) -> None:
        self._client = client
        self.put_records = put_records

    def __getattr__(self, name: str):
        return getattr(self._client, name)
