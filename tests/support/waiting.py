"""Waiting by condition: the one way a test waits for something another thread or process does."""

from __future__ import annotations

import time
from collections.abc import Callable


def wait_for(
    condition: Callable[[], object], timeout: float = 10, what: str = "the condition", interval: float = 0.02
) -> None:
    """Return as soon as `condition()` is truthy; fail the test if it is not within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out after {timeout} s waiting for {what}"
        time.sleep(interval)
