"""A `Metrics` port (chalicelib/services/metrics.py) that remembers what was counted, in order."""

from __future__ import annotations


class RecordingMetrics:
    def __init__(self) -> None:
        self.counted: list[tuple[str, str]] = []

    def count(self, metric: str, strategy: str) -> None:
        self.counted.append((str(metric), strategy))
