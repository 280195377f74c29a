"""Draining the app's queues and streams in the test's own thread, by condition rather than by idle time."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from infra.local.kinesis_poller import KinesisEventSourcePoller
from infra.local.sqs_poller import SqsEventSourcePoller

Poller = SqsEventSourcePoller | KinesisEventSourcePoller
WAITING = (
    "ApproximateNumberOfMessages",
    "ApproximateNumberOfMessagesNotVisible",
    "ApproximateNumberOfMessagesDelayed",
)


def messages_on(sqs: Any, queue_urls: Iterable[str]) -> int:
    """Messages on the queues: visible, in flight (received or backing off) and delayed."""
    counts = (sqs.get_queue_attributes(QueueUrl=url, AttributeNames=list(WAITING)) for url in queue_urls)
    return sum(int(value) for answer in counts for value in answer["Attributes"].values())


def deliver_what_is_there(poller: Poller, timeout: float) -> int:
    """Everything the source holds now: SQS until a receive finds nothing, Kinesis to each shard's end."""
    if isinstance(poller, SqsEventSourcePoller):
        return poller.run_until_empty(timeout=timeout)
    return poller.run_until_caught_up(timeout=timeout)


def drain(pollers: Sequence[Poller], messages_waiting: Callable[[], int], timeout: float) -> int:
    """Deliver until a pass in which no poller delivers anything finds no message waiting on any queue
    (visible, in flight, backing off or delayed). The handlers run in this thread, so nothing can have been
    produced since that pass: the queues and streams are drained. A pass that delivers goes round again (a
    persisted decision may put a release on a stream; a consumer may send on). -> messages delivered."""
    delivered = 0
    deadline = time.monotonic() + timeout
    while True:
        this_pass = sum(deliver_what_is_there(p, max(1.0, deadline - time.monotonic())) for p in pollers)
        delivered += this_pass
        if this_pass == 0:
            waiting = messages_waiting()
            if waiting == 0:
                return delivered
            assert time.monotonic() < deadline, f"not drained after {timeout} s ({waiting} messages waiting)"
            time.sleep(0.05)  # messages backing off: SQS makes them visible again on its own clock
        assert time.monotonic() < deadline, f"not drained after {timeout} s (still delivering)"
