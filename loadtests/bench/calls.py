"""What the generators of a scenario with its own flow (hold-and-abandon, queue) sent and were answered: their
`kind` / `status` / `latency_ms` columns tallied once, and the fields every such run reports about them."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

# The generator's statuses of a request that got no answer (load.py's TRANSPORT_ERROR, TIMEOUT).
CONNECTION, TIMEOUT = -1, -2


@dataclass
class Calls:
    statuses: dict[int, int] = field(default_factory=dict)
    latency_by_kind: dict[str, list[float]] = field(default_factory=dict)
    status_by_kind: dict[str, dict[str, int]] = field(default_factory=dict)

    @property
    def requests(self) -> int:
        return sum(self.statuses.values())

    @property
    def unanswered(self) -> int:
        return self.statuses.get(CONNECTION, 0) + self.statuses.get(TIMEOUT, 0)

    @property
    def server_errors(self) -> int:
        return sum(n for status, n in self.statuses.items() if status >= 500)


def tally(outputs: list[dict], kinds: Iterable[str] = ()) -> Calls:
    """The generators' calls counted by status and by kind (`kinds` listed even when none was made)."""
    calls = Calls(latency_by_kind={kind: [] for kind in kinds}, status_by_kind={kind: {} for kind in kinds})
    for out in outputs:
        for kind, status, latency in zip(out["kind"], out["status"], out["latency_ms"], strict=True):
            calls.statuses[status] = calls.statuses.get(status, 0) + 1
            calls.latency_by_kind.setdefault(kind, []).append(latency)
            counts = calls.status_by_kind.setdefault(kind, {})
            counts[str(status)] = counts.get(str(status), 0) + 1
    return calls


def call_fields(
    calls: Calls, outputs: list[dict], percentiles: Callable[[list[float]], Any]
) -> dict[str, Any]:
    """The run's fields about its calls, as the report and the invariants read them."""
    by_kind = calls.latency_by_kind
    return {
        "requests": calls.requests,
        "concurrency": sum(out.get("concurrency", 0) for out in outputs),
        "status_counts": {str(k): v for k, v in sorted(calls.statuses.items())},
        "status_counts_by_call": calls.status_by_kind,
        "answered": calls.requests - calls.unanswered,
        "errors_detail": {
            "5xx": calls.server_errors,
            "timeouts": calls.statuses.get(TIMEOUT, 0),
            "connection": calls.statuses.get(CONNECTION, 0),
        },
        "latency_ms": percentiles([v for values in by_kind.values() for v in values]),
        "latency_ms_by_kind": {kind: percentiles(values) for kind, values in by_kind.items()},
    }


def generator_fields(outputs: list[dict]) -> dict[str, Any]:
    """The generators' own cost, and the first answers of an unexpected status (at most five) if any."""
    fields: dict[str, Any] = {
        "generator": {
            "processes": len(outputs),
            "cpu_seconds": round(sum(out["cpu_seconds"] for out in outputs), 2),
            "wall_seconds": round(max(out["wall_seconds"] for out in outputs), 3),
        }
    }
    samples = [sample for out in outputs for sample in out.get("error_samples", [])]
    if samples:
        fields["error_samples"] = samples[:5]
    return fields
