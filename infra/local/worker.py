"""The local stand-in for Lambda's event source mappings: poll every queue the app subscribes to with
`@app.on_sqs_message` and every stream of `@app.on_kinesis_record`, and deliver batches to the real handlers
(see sqs_poller and kinesis_poller for the semantics). Where each stream was read to is kept in a checkpoint
file, as the event source mapping keeps it, so a restarted worker resumes after its last good batch. Every
`@app.schedule` handler runs at its rate too (see scheduler), as EventBridge would invoke it.

`--processes N` (`WORKER_PROCESSES`, default: the machine's cores) runs the pollers in N processes, as Lambda
runs many execution environments: one handler call holds the GIL, so one process uses one core at most.
This process then only supervises them (a child that dies is started again with the same share; SIGTERM or
SIGINT stops them all, and a child whose parent is gone stops by itself):

* every process polls every SQS queue (`--concurrency` batches at once each): the queue hands a message to
  one receiver at a time (visibility timeout), and a FIFO group's next messages to nobody while one of its
  messages is in flight, so order per group holds across processes as it does across Lambda instances;
* each Kinesis shard is read by one process only: process i of N reads every N-th shard in sorted order
  from the i-th (kinesis_poller.share_of_shards), and checkpoints them in the shared file (locked across
  processes); a restarted process gets the same shards and resumes after their checkpoints;
* `stream_state`'s seat ledger is a RocksDB directory (one opener each), a cache of the changelog: process i
  keeps its own under `<LEDGER_DIR>/process-<i>`, as each Lambda environment keeps its own in /tmp;
* schedules run in process 0 only (EventBridge invokes a rule once, not once per environment).

`--processes 1` runs everything in this one process, as before (no supervisor, the ledger in LEDGER_DIR)."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable

from infra.local.stage import PROJECT_DIR, apply_stage_environment

log = logging.getLogger("worker")

PROCESSES_VARIABLE = "WORKER_PROCESSES"
_RESTART_DELAY_FIRST_SECONDS = 0.5
_RESTART_DELAY_MAX_SECONDS = 10.0
_STABLE_AFTER_SECONDS = 10.0  # a child that ran this long before dying is restarted at once


def default_checkpoint_file(stage: str) -> str:
    return os.path.join(tempfile.gettempdir(), f"seat-booking-{stage}", "kinesis-checkpoints.json")


def default_processes(environ: dict[str, str] | os._Environ[str] = os.environ) -> int:
    """WORKER_PROCESSES if set, else one per core."""
    value = environ.get(PROCESSES_VARIABLE, "").strip()
    if value:
        processes = int(value)
        if processes < 1:
            raise ValueError(f"{PROCESSES_VARIABLE} must be at least 1, got {value!r}")
        return processes
    return os.cpu_count() or 1


def process_ledger_dir(ledger_dir: str, index: int) -> str:
    """Process `index`'s own seat ledger (RocksDB allows one opener per directory)."""
    return os.path.join(ledger_dir, f"process-{index}")


# --- the supervisor -----------------------------------------------------------------------------------------
class Supervisor:
    """Keeps `count` child processes running: `spawn(index)` starts child `index`; a child that exits while
    the supervisor runs is started again with the same index (after a doubling delay if it keeps dying at
    once). `stop` asks every child with SIGTERM, waits for all, and kills what is left at the deadline."""

    def __init__(
        self,
        spawn: Callable[[int], subprocess.Popen],
        count: int,
        *,
        logger: logging.Logger | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if count < 1:
            raise ValueError("count must be at least 1")
        self._spawn = spawn
        self.count = count
        self._log = logger or log
        self._clock = clock
        self.children: list[subprocess.Popen | None] = [None] * count
        self._started_at = [0.0] * count
        self._delay = [_RESTART_DELAY_FIRST_SECONDS] * count
        self._restart_at: list[float | None] = [None] * count
        self.restarts = [0] * count
        self._stopped = False
        self._lock = threading.Lock()

    def start(self) -> None:
        for index in range(self.count):
            self._start(index)

    def _start(self, index: int) -> None:
        self.children[index] = self._spawn(index)
        self._started_at[index] = self._clock()
        self._restart_at[index] = None

    def check(self) -> None:
        """One round: restart the children that exited (or schedule it, if they died right after a start)."""
        with self._lock:
            if self._stopped:
                return
            now = self._clock()
            for index, child in enumerate(self.children):
                if self._restart_at[index] is not None:
                    if now >= self._restart_at[index]:
                        self.restarts[index] += 1
                        self._start(index)
                    continue
                if child is None or child.poll() is None:
                    continue
                ran = now - self._started_at[index]
                if ran >= _STABLE_AFTER_SECONDS:
                    self._delay[index] = _RESTART_DELAY_FIRST_SECONDS
                    delay = 0.0
                else:
                    delay = self._delay[index]
                    self._delay[index] = min(delay * 2, _RESTART_DELAY_MAX_SECONDS)
                self._log.error(
                    "worker process %d (pid %d) exited with %s after %.1f s; restarting it in %.1f s",
                    index,
                    child.pid,
                    child.returncode,
                    ran,
                    delay,
                )
                self._restart_at[index] = now + delay
                if delay == 0:
                    self.restarts[index] += 1
                    self._start(index)

    def run(self, stopping: threading.Event, interval: float = 0.2) -> None:
        self.start()
        while not stopping.wait(interval):
            self.check()

    def stop(self, timeout: float = 15.0) -> None:
        with self._lock:
            self._stopped = True
            live = [child for child in self.children if child is not None and child.poll() is None]
            for child in live:
                child.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + timeout
            for child in live:
                try:
                    child.wait(max(0.0, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    self._log.warning(
                        "worker process pid %d did not stop in %.0f s; killing it", child.pid, timeout
                    )
                    child.kill()
                    child.wait()

    def pids(self) -> list[int]:
        return [child.pid for child in self.children if child is not None and child.poll() is None]


def _child_command(args: argparse.Namespace, index: int, count: int) -> list[str]:
    command = [sys.executable, "-m", "infra.local.worker", "--stage", args.stage]
    command += [
        "--concurrency",
        str(args.concurrency),
        "--kinesis-poll-interval",
        str(args.kinesis_poll_interval),
    ]
    if args.stream_checkpoints:
        command += ["--stream-checkpoints", args.stream_checkpoints]
    if args.function_name_prefix:
        command += ["--function-name-prefix", args.function_name_prefix]
    return [*command, "--processes", str(count), "--process-index", str(index)]


def supervise(args: argparse.Namespace, count: int) -> None:
    from chalicelib.config import Settings

    settings = Settings.from_env()
    ledger_variable = Settings.env_name("ledger_dir")

    def spawn(index: int) -> subprocess.Popen:
        # In this process' group: whoever stops or pauses the group (tests, a terminal's Ctrl-C) reaches all.
        environment = {**os.environ, ledger_variable: process_ledger_dir(settings.ledger_dir, index)}
        return subprocess.Popen(_child_command(args, index, count), cwd=PROJECT_DIR, env=environment)

    supervisor = Supervisor(spawn, count)
    stopping = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stopping.set())
    log.info("supervising %d worker processes; Ctrl-C stops them", count)
    try:
        supervisor.run(stopping)
    finally:
        supervisor.stop()
    log.info("stopped")


# --- one process of pollers ---------------------------------------------------------------------------------
def _watch_parent(parent: int, stopping: threading.Event) -> None:
    """A child of a supervisor that was killed (SIGKILL leaves no time to stop the children) stops too."""
    while not stopping.wait(1.0):
        if os.getppid() != parent:
            log.warning("the supervising process %d is gone; stopping", parent)
            stopping.set()


def run_pollers(args: argparse.Namespace, index: int, count: int) -> None:
    prefix = args.function_name_prefix or f"seat-booking-{args.stage}"
    import app as app_module
    from chalicelib.adapters import aws
    from chalicelib.config import settings
    from infra.local import kinesis_poller, scheduler, sqs_poller

    checkpoint_file = args.stream_checkpoints or default_checkpoint_file(args.stage)
    checkpoints = kinesis_poller.FileCheckpoints(checkpoint_file)
    pollers = [
        *sqs_poller.pollers_for_app(
            app_module,
            aws.client("sqs", settings),
            function_name_prefix=prefix,
            concurrency=args.concurrency,
        ),
        *kinesis_poller.pollers_for_app(
            app_module,
            aws.client("kinesis", settings),
            function_name_prefix=prefix,
            checkpoints=checkpoints,
            poll_interval_seconds=args.kinesis_poll_interval,
            shard_share=(index, count),
        ),
    ]
    if index == 0:
        pollers += scheduler.schedules_for_app(
            app_module, function_name_prefix=prefix, region=settings.aws_region
        )
    stopping = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stopping.set())
    if args.process_index is not None:
        threading.Thread(target=_watch_parent, args=(os.getppid(), stopping), daemon=True).start()
    for poller in pollers:
        poller.start()
    log.info(
        "process %d of %d: running %d event source(s) and schedule(s); Ctrl-C stops",
        index,
        count,
        len(pollers),
    )
    stopping.wait()
    for poller in pollers:
        poller.stop(timeout=10)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--stage", default="local")
    parser.add_argument("--concurrency", type=int, default=2, help="concurrent batches per queue and process")
    parser.add_argument(
        "--processes",
        type=int,
        help=f"worker processes (default: {PROCESSES_VARIABLE}, else one per core; 1: no supervisor)",
    )
    parser.add_argument("--process-index", type=int, help=argparse.SUPPRESS)  # a supervised child's share
    parser.add_argument("--stream-checkpoints", help="checkpoint file of the Kinesis event sources")
    parser.add_argument("--function-name-prefix", help="as deployed: <prefix>-<handler> (checkpoint keys)")
    parser.add_argument(
        "--kinesis-poll-interval",
        type=float,
        default=0.2,
        help="seconds between two reads of a caught-up shard (Lambda's event source mapping: 1)",
    )
    args = parser.parse_args()
    apply_stage_environment(args.stage)
    count = args.processes or default_processes()
    if count < 1:
        parser.error("--processes must be at least 1")
    if args.process_index is not None and not 0 <= args.process_index < count:
        parser.error("--process-index must be below --processes")
    label = "worker" if args.process_index is None else f"worker[{args.process_index}]"
    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s {label} %(levelname)s %(name)s: %(message)s")
    sys.path.insert(0, str(PROJECT_DIR))
    if count > 1 and args.process_index is None:
        supervise(args, count)
    else:
        run_pollers(args, args.process_index or 0, count)


if __name__ == "__main__":
    main()
