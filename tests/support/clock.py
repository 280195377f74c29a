"""A clock a test moves by hand: waiting out a circuit breaker's reset period without sleeping through it."""

from __future__ import annotations

import time


class FakeClock:
    """Starts at `start` (the real monotonic time by default) and moves only when advanced."""

    def __init__(self, start: float | None = None) -> None:
        self._now = time.monotonic() if start is None else start

    def __call__(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        self._now += seconds
