"""Starting and stopping the servers the end-to-end tests drive."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until_up(url: str, process: subprocess.Popen, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, "the server exited during start-up"
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.TransportError:
            time.sleep(0.2)
    raise AssertionError(f"{url} did not answer within {timeout} s")


def stop(process: subprocess.Popen) -> None:
    """Stop a server the test started and, when it leads a process group of its own
    (`start_new_session=True`), every process left in that group: a reloader's or a pre-forking server's
    children would otherwise outlive the test. (A process started in the test's group leads none, so no
    group bears its pid.)"""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)


def group_alive(process: subprocess.Popen) -> bool:
    """Whether any process of the group `process` leads is still running."""
    try:
        os.killpg(process.pid, 0)
    except ProcessLookupError:
        return False
    return True


class Worker:
    """The worker process (and the processes it supervises, infra/local/worker.py --processes), which a test
    may pause to make "both requests are in line before either is decided" a certainty instead of a race
    against the pollers."""

    def __init__(self, process: subprocess.Popen) -> None:
        self._process = process

    def pids(self) -> list[int]:
        """The worker and its children (the supervisor first: it is stopped first and resumed last, so it
        never sees a stopped child as one to restart)."""
        import psutil

        if self._process.poll() is not None:
            return []
        with contextlib.suppress(psutil.NoSuchProcess):
            return [self._process.pid, *(c.pid for c in psutil.Process(self._process.pid).children())]
        return []

    @contextmanager
    def paused(self) -> Iterator[None]:
        """SIGSTOP for the block, SIGCONT after: whatever they had received they handle once resumed."""
        pids = self.pids()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGSTOP)
        try:
            yield
        finally:
            for pid in reversed(pids):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGCONT)
