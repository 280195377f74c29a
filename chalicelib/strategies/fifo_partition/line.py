"""The line of one section within one Lambda batch: a FIFO group is decided in arrival order, so nothing
behind a failed message of its group is decided before it.

SQS FIFO hands a batch out in group order but leaves what to do after a failure to the function (AWS: "stop
processing messages after the first failure and return all failed and unprocessed messages"). The batch
handler (entrypoints/sqs_batch.py) asks this before deciding each message and reports the ones that must
wait as failed, unprocessed.
"""

from __future__ import annotations


class WaitingInLine(Exception):
    """A FIFO message not processed because an earlier one of its group failed in the same batch."""


class BatchLine:
    """Which groups of one batch have a failed message (a new one per batch: the next batch starts clean)."""

    def __init__(self, max_receive_count: int) -> None:
        self._max_receive_count = max_receive_count
        self._blocked: set[str] = set()

    def check(self, group: str | None, receive_count: int) -> None:
        """Raise WaitingInLine if this message must wait behind a failed one of its group.

        Each skip still counts as a receive, so a message at its last delivery is processed anyway: left
        unprocessed it would reach the DLQ with nobody compensating it."""
        if group is not None and group in self._blocked and receive_count < self._max_receive_count:
            raise WaitingInLine(f"behind a failed message of group {group}")

    def failed(self, group: str | None) -> None:
        if group is not None:
            self._blocked.add(group)
