"""Where the time goes: CPU seconds per component for every run (psutil), and, for the runs asked for, a
sampling profile of the server's worker processes (py-spy, out of process: the server runs unchanged).

py-spy samples only threads that are on the CPU (not those waiting on a socket), so its profile says where
the server's CPU goes; the per-component CPU seconds say which process (server, consumers, emulator, MySQL,
Redis, load generator) used the machine's cores meanwhile.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import ClassVar

import psutil

# A frame's file (py-spy prints it relative to its sys.path entry) -> the area its time is charged to.
AREAS = (
    ("chalicelib/adapters/", "app: adapters (MySQL, Redis, SQS, Kinesis)"),
    ("chalicelib/", "app: services, strategies, domain"),
    ("app.py", "app: routes"),
    ("infra/local/wsgi.py", "WSGI adapter (infra/local/wsgi.py)"),
    ("infra/local/", "local event sources (infra/local)"),
    ("chalice/", "chalice (LocalGateway, routing, event building)"),
    ("botocore/", "botocore (AWS SDK: signing, serialising, parsing)"),
    ("boto3/", "botocore (AWS SDK: signing, serialising, parsing)"),
    ("urllib3/", "urllib3 (AWS SDK's HTTP)"),
    ("pymysql/", "pymysql (MySQL protocol)"),
    ("dbutils/", "DBUtils pool"),
    ("redis/", "redis-py"),
    ("aws_lambda_powertools/", "powertools (idempotency, batch)"),
    ("ulid/", "python-ulid"),
    ("granian/", "granian (Python side)"),
    ("logging/", "logging"),
    ("json/", "json"),
    ("http/", "http.client / email (stdlib HTTP)"),
    ("email/", "http.client / email (stdlib HTTP)"),
    ("socket.py", "socket / ssl / selectors"),
    ("ssl.py", "socket / ssl / selectors"),
    ("selectors.py", "socket / ssl / selectors"),
    ("threading.py", "threading (locks, conditions)"),
    ("queue.py", "threading (locks, conditions)"),
)
APP_FILES = ("chalicelib/", "app.py", "infra/local/")


def frame_file(frame: str) -> str:
    """'func (path/file.py:12)' -> 'path/file.py'."""
    inside = frame.rpartition(" (")[2].rstrip(")")
    return inside.rpartition(":")[0] or inside


def area_of(frame: str) -> str:
    path = frame_file(frame)
    for prefix, area in AREAS:
        if path.startswith(prefix):
            return area
    return f"other: {path.split('/')[0]}"


class CpuMeter:
    """CPU seconds (user + system) used by groups of processes between two snapshots."""

    def __init__(self, groups: dict[str, list[int]]) -> None:
        self._groups = groups
        self._before: dict[str, float] = {}

    @staticmethod
    def _cpu(pids: list[int]) -> float:
        total = 0.0
        seen: set[int] = set()
        for pid in pids:
            with contextlib.suppress(psutil.Error):
                process = psutil.Process(pid)
                for p in (process, *process.children(recursive=True)):
                    if p.pid in seen:
                        continue
                    seen.add(p.pid)
                    with contextlib.suppress(psutil.Error):
                        times = p.cpu_times()
                        total += times.user + times.system
        return total

    @classmethod
    def of_stack(cls, stack) -> CpuMeter:
        """The stack's components, each a group: server, consumers, emulator, and the machine's MySQL and
        Redis servers (shared: other work on them is counted too)."""
        return cls(
            {
                "server": stack.server_pids(),
                "consumers": stack.worker_pids(),
                "emulator": stack.emulator_pids(),
                "mysql": find_pids("mariadbd", "mysqld"),
                "redis": find_pids("redis-server"),
            }
        )

    def add_group(self, name: str, pids: list[int]) -> None:
        """Another group (before start(): e.g. the load generator processes once they exist)."""
        self._groups[name] = pids

    def snapshot(self) -> dict[str, float]:
        """Every group's CPU seconds so far (two snapshots' difference: a window's CPU, see `between`)."""
        return {name: self._cpu(pids) for name, pids in self._groups.items()}

    @staticmethod
    def between(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
        return {name: round(after[name] - before[name], 2) for name in before}

    def start(self) -> None:
        self._before = self.snapshot()

    def stop(self) -> dict[str, float]:
        return self.between(self._before, self.snapshot())


def find_pids(*names: str) -> list[int]:
    """The machine's MySQL/MariaDB or Redis server processes (read only: their CPU time is measured)."""
    found = []
    for process in psutil.process_iter(["name"]):
        if process.info["name"] in names:
            found.append(process.pid)
    return found


def py_spy() -> str | None:
    candidate = Path(sys.executable).with_name("py-spy")
    return str(candidate) if candidate.exists() else shutil.which("py-spy")


class Profiler:
    """py-spy record on each pid, raw (collapsed stack) output, until stop(): once with --gil (the samples of
    the thread holding the GIL: where the Python CPU goes) and once with --idle (every thread, waiting or not:
    where a request's wall time goes)."""

    MODES: ClassVar[dict[str, list[str]]] = {"gil": ["--gil"], "wall": ["--idle"]}

    def __init__(self, pids: dict[str, int], out_dir: Path, rate: int = 200) -> None:
        self._targets = pids
        self._out_dir = out_dir
        self._rate = rate
        self._processes: list[tuple[str, str, Path, subprocess.Popen]] = []

    def start(self) -> bool:
        binary = py_spy()
        if binary is None:
            return False
        self._out_dir.mkdir(parents=True, exist_ok=True)
        for name, pid in self._targets.items():
            for mode, flags in self.MODES.items():
                out = self._out_dir / f"{name}.{mode}.txt"
                command = [binary, "record", "--pid", str(pid), "--rate", str(self._rate), "--format", "raw"]
                process = subprocess.Popen(
                    [*command, "--output", str(out), "--nonblocking", *flags],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
                self._processes.append((name, mode, out, process))
        return True

    def stop(self) -> dict:
        for *_, process in self._processes:
            if process.poll() is None:
                process.send_signal(signal.SIGINT)
        for *_, process in self._processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
        summary: dict = {}
        for mode in self.MODES:
            for role in ("server", "consumers"):
                files = [
                    out
                    for name, m, out, _ in self._processes
                    if m == mode and name.startswith(role) and out.exists()
                ]
                if files:
                    requests_only = role == "server" and mode == "wall"
                    summary[f"{role}_{mode}"] = summarise(files, requests_only=requests_only)
        return summary


def summarise(files: list[Path], top: int = 15, requests_only: bool = False) -> dict:
    """Self samples by area and by function, inclusive samples by app function, over every file.
    `requests_only`: only the stacks of threads handling a request (through infra/local/wsgi.py), not
    granian's idle threads or a process's main thread waiting for its end."""
    by_area: Counter = Counter()
    by_function: Counter = Counter()
    inclusive: Counter = Counter()
    total = 0
    for file in files:
        for line in file.read_text().splitlines():
            stack, _, count_text = line.rpartition(" ")
            if not stack.strip() or not count_text.isdigit():
                continue  # a thread with no Python frame (granian's own Rust threads)
            count = int(count_text)
            frames = stack.split(";")
            if requests_only and not any(f.startswith("application (infra/local/wsgi.py") for f in frames):
                continue  # not a request: granian's main thread (forked from wsgi.py's serve()) and the like
            total += count
            leaf = frames[-1]
            by_area[area_of(leaf)] += count
            by_function[leaf] += count
            for frame in set(frames):
                if frame_file(frame).startswith(APP_FILES):
                    inclusive[frame] += count

    def share(counter: Counter) -> list[dict]:
        return [
            {"what": name, "samples": count, "percent": round(100 * count / total, 1) if total else 0.0}
            for name, count in counter.most_common(top)
        ]

    return {
        "samples": total,
        "self_by_area": share(by_area),
        "self_by_function": share(by_function),
        "inclusive_app_functions": share(inclusive),
        "files": [f"{f.parent.name}/{f.name}" for f in files],
    }
