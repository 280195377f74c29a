"""Structured logs and metrics, through Powertools.

Logs: one JSON logger for the process (Powertools' Logger, service "seat-booking"). The modules of
`chalicelib` keep logging with `logging.getLogger(__name__)`: their parent logger, "chalicelib", writes
through the same JSON handler, so every line carries the correlation id the entrypoint set (`correlated`).

Metrics: the services' `Metrics` port as CloudWatch embedded metric format (EMF) lines on stdout, which Lambda
ships to CloudWatch Logs and CloudWatch turns into metrics. Counts add up in memory and leave when the
invocation ends (`EmfMetrics.flush`), one line per strategy (the dimension).
"""

from __future__ import annotations

import atexit
import json
import logging
import sys
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from contextvars import ContextVar, Token

from aws_lambda_powertools import Logger
from aws_lambda_powertools.logging.filters import SuppressFilter
from aws_lambda_powertools.metrics import EphemeralMetrics, MetricUnit

from chalicelib.config import Settings

SERVICE = "seat-booking"
NAMESPACE = "SeatBooking"
STRATEGY_DIMENSION = "strategy"
PACKAGE_LOGGER = "chalicelib"

log = logging.getLogger(__name__)

# "name": the logger that wrote the line, i.e. its module (Powertools fills record attributes given so).
logger = Logger(service=SERVICE, name="%(name)s")


def configure(settings: Settings) -> None:
    """The process's logs and metrics as the settings say (app.py, once at import). Safe to call again."""
    configure_logging(settings.log_level)
    metrics.flush_every_seconds = settings.metrics_flush_seconds


def configure_logging(level: str) -> None:
    """JSON at `level` for the app's logger and every `chalicelib` module's."""
    logger.setLevel(level)
    package = logging.getLogger(PACKAGE_LOGGER)
    package.setLevel(logger.log_level)
    handler = logger.registered_handler
    if not any(isinstance(f, _WithCorrelationId) for f in handler.filters):
        handler.addFilter(_WithCorrelationId())
    if handler not in package.handlers:
        package.addHandler(handler)
    # A handler the host put on the root logger (Lambda's runtime, the local worker's basicConfig) would
    # write each line a second time, as text: it leaves "chalicelib" to ours, as Powertools does for the
    # service's own logger. The records still propagate, so pytest's caplog sees them.
    for host_handler in logging.root.handlers:
        if type(host_handler).__module__ != "_pytest.logging" and not _suppresses(
            host_handler, PACKAGE_LOGGER
        ):
            host_handler.addFilter(SuppressFilter(PACKAGE_LOGGER))


def _suppresses(handler: logging.Handler, name: str) -> bool:
    return any(isinstance(f, SuppressFilter) and f.logger == name for f in handler.filters)


# The correlation id of what this thread is doing. Our own context variable rather than Powertools'
# thread-safe keys: setting it costs a fraction of a microsecond on every request, and a log line (rare on
# the request path) reads it only when it is written (_WithCorrelationId).
_correlation_id: ContextVar[str | None] = ContextVar("correlation_id", default=None)


class _WithCorrelationId(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.correlation_id = _correlation_id.get()  # an extra attribute: Powertools writes it as a key
        return True


class correlated:  # lower case, as contextlib.suppress: `with correlated(booking_id): ...`
    """Log lines written inside carry `correlation_id` (None: keep the current one). Per thread: the local
    server's threads each serve their own request. The previous id is back on exit (a batch's records each
    have theirs, inside the invocation's). A class, not @contextmanager: it runs on every request, and a
    generator costs three times as much."""

    __slots__ = ("_correlation_id", "_token")

    def __init__(self, correlation_id: str | None) -> None:
        self._correlation_id = correlation_id
        self._token: Token[str | None] | None = None

    def __enter__(self) -> None:
        if self._correlation_id is not None:
            self._token = _correlation_id.set(self._correlation_id)

    def __exit__(self, *exc_info: object) -> None:
        if self._token is not None:
            _correlation_id.reset(self._token)


def _stdout_line(line: str) -> None:
    # One write: print() writes the line and its newline separately, and another thread's log line could
    # land in between (the local server runs requests on many threads).
    sys.stdout.write(line + "\n")


class EmfMetrics:
    """The services' `Metrics` port (services/metrics.py; adapters know its names as plain strings) as EMF.
    `count` only adds to a counter (under a lock: the local server counts from many threads); `flush` turns
    the counts into one EMF line per strategy with Powertools.

    `flush_every_seconds` 0 flushes every time it is asked (at the end of every invocation): on Lambda the
    process may be frozen, or never thawed, right after. A long-running local process can pass more: a few
    seconds of counts share one line, and the request path keeps its CPU (docs/operations.md)."""

    def __init__(
        self,
        flush_every_seconds: float = 0.0,
        write: Callable[[str], object] = _stdout_line,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.flush_every_seconds = flush_every_seconds
        self._write = write
        self._clock = clock
        self._counts: Counter[tuple[str, str]] = Counter()
        self._lock = threading.Lock()
        self._flushed_at = clock()
        self._emf = EphemeralMetrics(namespace=NAMESPACE, service=SERVICE)

    def count(self, metric: str, strategy: str) -> None:
        with self._lock:
            self._counts[(strategy, metric)] += 1

    def flush(self, force: bool = False) -> None:
        if not self._counts:  # the common case off the booking path: nothing counted, nothing to do
            return
        if not force and self._clock() - self._flushed_at < self.flush_every_seconds:
            return
        with self._lock:
            counts, self._counts = self._counts, Counter()
            self._flushed_at = self._clock()
            for strategy, metrics in _by_strategy(counts).items():
                try:
                    self._write(self._emf_line(strategy, metrics))
                except Exception:
                    # Flushed as a request ends: counting must never fail what it counts (a booking made).
                    log.exception("the metrics of %s are lost: %s", strategy, metrics)

    def _emf_line(self, strategy: str, metrics: dict[str, int]) -> str:
        try:
            self._emf.add_dimension(name=STRATEGY_DIMENSION, value=strategy)
            for metric, value in metrics.items():
                self._emf.add_metric(name=metric, unit=MetricUnit.Count, value=value)
            return json.dumps(self._emf.serialize_metric_set(), separators=(",", ":"))
        finally:
            self._emf.clear_metrics()


def _by_strategy(counts: Counter[tuple[str, str]]) -> dict[str, dict[str, int]]:
    grouped: dict[str, dict[str, int]] = defaultdict(dict)
    for (strategy, metric), value in counts.items():
        grouped[strategy][metric] = value
    return grouped


# One per process, as stdout is: bootstrap hands it to the services, app.py flushes it after every
# invocation; what a long-running process still holds when it exits leaves then.
metrics = EmfMetrics()
atexit.register(metrics.flush, True)
