"""The local worker's processes (infra/local/worker.py): how many, which shards each reads, and the
supervisor that keeps them running (real child processes; the restart delay on an injected clock)."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from infra.local.kinesis_poller import CheckpointKey, FileCheckpoints, share_of_shards
from infra.local.worker import Supervisor, default_processes, process_ledger_dir
from tests.support.waiting import wait_for

SHARDS = [f"shardId-{n:012d}" for n in range(7)]


@pytest.mark.parametrize("count", [1, 2, 3, 7, 9])
def test_the_shares_of_all_processes_hold_every_shard_once(count: int) -> None:
    shares = [share_of_shards(reversed(SHARDS), (index, count)) for index in range(count)]
    assert sorted(shard for share in shares for shard in share) == SHARDS, "no gap, no overlap"
    assert all(share == sorted(share) for share in shares)
    assert shares == [share_of_shards(SHARDS, (index, count)) for index in range(count)], "stable"


@pytest.mark.parametrize("share", [(2, 2), (-1, 2), (0, 0)])
def test_a_share_outside_the_processes_is_refused(share: tuple[int, int]) -> None:
    with pytest.raises(ValueError, match="shard_share"):
        share_of_shards(SHARDS, share)


def test_processes_default_to_the_cores_unless_set() -> None:
    assert default_processes({}) == (os.cpu_count() or 1)
    assert default_processes({"WORKER_PROCESSES": "3"}) == 3
    with pytest.raises(ValueError, match="WORKER_PROCESSES"):
        default_processes({"WORKER_PROCESSES": "0"})
    assert process_ledger_dir("/tmp/ledger", 1) == "/tmp/ledger/process-1"


def _put_many(path: str, function_name: str, count: int) -> None:
    key = CheckpointKey(function_name, "stream", "shardId-000000000000")
    for n in range(count):
        FileCheckpoints(path).put(key._replace(shard_id=f"shardId-{n:012d}"), str(n))


def test_checkpoints_of_several_processes_in_one_file_are_all_kept(tmp_path: Path) -> None:
    path = str(tmp_path / "checkpoints.json")
    context = multiprocessing.get_context("spawn")
    writers = [context.Process(target=_put_many, args=(path, f"fn-{i}", 40)) for i in range(3)]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join(60)
        assert writer.exitcode == 0
    positions = json.loads(Path(path).read_text())
    assert len(positions) == 3 * 40, "no process put back a file without another's positions"


# --- the supervisor ----------------------------------------------------------------------------------------
CHILD = textwrap.dedent(
    """
    import pathlib, signal, sys, time
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    pathlib.Path(sys.argv[1]).touch()  # its handler is in place
    while True:
        time.sleep(60)
    """
)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture()
def supervisor(tmp_path: Path):
    spawned: list[tuple[int, subprocess.Popen]] = []

    def spawn(index: int) -> subprocess.Popen:
        process = subprocess.Popen([sys.executable, "-c", CHILD, str(tmp_path / f"ready-{len(spawned)}")])
        spawned.append((index, process))
        return process

    clock = Clock()
    made = Supervisor(spawn, 2, clock=clock)
    made.spawned, made.clock = spawned, clock  # type: ignore[attr-defined]
    yield made
    made.stop(timeout=5)
    for _, process in spawned:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_a_child_that_dies_is_started_again_with_its_index(supervisor) -> None:
    supervisor.start()
    first = list(supervisor.children)
    first[1].kill()
    first[1].wait()
    supervisor.clock.now += 60  # it had run a while: restarted at once
    supervisor.check()
    assert supervisor.children[0] is first[0], "the other child is left alone"
    assert supervisor.children[1] is not first[1] and supervisor.children[1].poll() is None
    assert [index for index, _ in supervisor.spawned] == [0, 1, 1]
    assert supervisor.restarts == [0, 1]


def test_a_child_that_keeps_dying_at_once_is_restarted_after_doubling_delays(supervisor) -> None:
    supervisor.start()
    delays = []
    for _ in range(3):
        dying = supervisor.children[0]
        dying.kill()
        dying.wait()
        supervisor.check()  # noticed: a restart scheduled, not done
        assert supervisor.children[0] is dying
        started = supervisor.clock.now
        while supervisor.children[0] is dying:
            supervisor.clock.now += 0.25
            supervisor.check()
        delays.append(supervisor.clock.now - started)
    assert delays == [0.5, 1.0, 2.0]
    assert supervisor.restarts == [3, 0]


def test_stop_ends_every_child_and_restarts_none(supervisor, tmp_path: Path) -> None:
    supervisor.start()
    children = list(supervisor.children)
    wait_for(lambda: len(list(tmp_path.glob("ready-*"))) == 2, 10, "the children's handlers")
    supervisor.stop(timeout=5)
    assert [child.returncode for child in children] == [0, 0], "each stopped by its SIGTERM"
    supervisor.check()
    assert len(supervisor.spawned) == 2, "a child stopped by stop() is not restarted"


def test_a_child_deaf_to_sigterm_is_killed_at_the_deadline(tmp_path: Path) -> None:
    ready = tmp_path / "ready"
    deaf = (
        "import signal, time, pathlib; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        f"pathlib.Path({str(ready)!r}).touch(); time.sleep(60)"
    )
    made = Supervisor(lambda index: subprocess.Popen([sys.executable, "-c", deaf]), 1)
    made.start()
    wait_for(ready.exists, 10, "the child's handler")
    made.stop(timeout=0.5)
    assert made.children[0].returncode == -signal.SIGKILL
