"""A clock a test moves by hand: waiting out a circuit breaker's reset period without sleeping through it."""

from __future__ import annotations

import time


class FakeClock:
    """Starts at the real monotonic time and moves only when advanced."""

    def __init__(self) -> None:
        self._now = time.monotonic()

    def __call__(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        self._now += seconds
