"""A small thread-safe circuit breaker for calls to a dependency that may go away (Redis).

closed --(failure_threshold consecutive failures)--> open --(reset_seconds)--> half-open: the first caller
runs `probe` (a cheap health call) and then `on_recovered` (e.g. rebuild state the dependency may have lost
or missed while away) while every other caller is still refused; only when both succeed does the circuit
close and that caller go on. A failure opens the circuit for another period. So the dependency is trusted
again only after the recovery work is done, and no real work is wasted as a trial.

Why not a library: pybreaker holds one lock around every protected call, so all Redis calls of a process
would run one at a time (danielfm/pybreaker#55, open); `circuitbreaker` keeps its counters without any lock
and lets every caller through when half-open (fabfuel/circuitbreaker#61). Only the state changes are locked
here; the calls themselves run concurrently.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

T = TypeVar("T")

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half-open"


class CircuitOpen(Exception):
    """The circuit is open: the call was not attempted."""


class CircuitBreaker:
    def __init__(
        self,
        name: str,
        failure_threshold: int = 5,
        reset_seconds: float = 5.0,
        is_failure: Callable[[BaseException], bool] = lambda exc: True,
        probe: Callable[[], object] = lambda: None,
        on_recovered: Callable[[], object] = lambda: None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self._threshold = failure_threshold
        self._reset_seconds = reset_seconds
        self._is_failure = is_failure
        self.probe = probe
        self.on_recovered = on_recovered
        self.clock = clock  # the time source of the reset period (tests put a clock they advance)
        self._lock = threading.Lock()
        self._state = CLOSED
        self._failures = 0
        self._opened_at = 0.0
        self._recovering = False

    @property
    def state(self) -> str:
        with self._lock:
            if self._state == OPEN and self.clock() - self._opened_at >= self._reset_seconds:
                return HALF_OPEN
            return self._state

    def trip(self) -> None:
        """Open the circuit, due for a probe at once: the next call runs `probe` and `on_recovered` first
        (e.g. a check that could not run while the dependency was unreachable)."""
        with self._lock:
            self._state, self._opened_at = OPEN, self.clock() - self._reset_seconds

    def call(self, func: Callable[..., T], *args: object, **kwargs: object) -> T:
        self._admit()
        try:
            result = func(*args, **kwargs)
        except BaseException as exc:
            if self._is_failure(exc):
                self._record_failure()
            raise
        self._record_success()
        return result

    @contextmanager
    def guard(self) -> Iterator[None]:
        """`call` for a block: `with breaker.guard(): ...`."""
        self._admit()
        try:
            yield
        except BaseException as exc:
            if self._is_failure(exc):
                self._record_failure()
            raise
        self._record_success()

    def _admit(self) -> None:
        with self._lock:
            if self._state == CLOSED:
                return
            if self.clock() - self._opened_at < self._reset_seconds or self._recovering:
                raise CircuitOpen(f"{self.name}: circuit open")
            self._recovering = True
        try:
            self.probe()
            self.on_recovered()
        except BaseException as exc:
            with self._lock:
                self._recovering = False
                self._state, self._opened_at = OPEN, self.clock()
            raise CircuitOpen(f"{self.name}: still unavailable ({exc!r})") from exc
        with self._lock:
            self._recovering = False
            self._state, self._failures = CLOSED, 0

    def _record_failure(self) -> None:
        with self._lock:
            self._failures += 1
            if self._state == CLOSED and self._failures >= self._threshold:
                self._state, self._opened_at = OPEN, self.clock()

    def _record_success(self) -> None:
        with self._lock:
            if self._state == CLOSED:
                self._failures = 0
