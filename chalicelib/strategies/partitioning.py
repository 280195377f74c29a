"""The partition rule of the two lock-free strategies (`fifo_partition`, `stream_state`).

A booking belongs to the section of its lowest seat: one section's requests share a partition (an SQS FIFO
message group, a Kinesis partition key) and are decided in order by one consumer. A booking that spans
sections goes with its lowest seat; a clash with a booking of another section is then not ordered, and the
unique guard in MySQL decides it (see each strategy's docstring for what the loser sees).
"""

from __future__ import annotations

from chalicelib.domain.models import Performance


def section_partition(
    performance: Performance | None,
    performance_id: int,
    seat_ids: tuple[int, ...],
    wanted: tuple[int, int] | None = None,
) -> str:
    """A best available request (`wanted`: section id, count) goes with the section it asks for."""
    if not seat_ids:  # the best available: its section's; a booking with no seats at all: a fixed one
        return f"performance-{performance_id}-section-{wanted[0] if wanted else 0}"
    section = performance.section_of(min(seat_ids)) if performance else None
    return f"performance-{performance_id}-section-{section.section_id if section else 0}"
