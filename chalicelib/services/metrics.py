"""The booking counts operators watch (CloudWatch metrics on AWS), named where the use cases say what
happened: the services count through this port, bootstrap hands them the Powertools adapter
(adapters/observability.py). What each count means, and where it is emitted: docs/operations.md."""

from __future__ import annotations

from enum import StrEnum
from typing import Protocol

from chalicelib.domain.models import BookingStatus

# The dimension value of a count whose strategy cannot be known (a message too broken to name one).
UNKNOWN_STRATEGY = "unknown"


class BookingMetric(StrEnum):
    ACCEPTED = "BookingAccepted"  # a new booking answered 201 or 202
    REFUSED = "BookingRefused"  # a new request answered 409: a seat is taken
    SERVICE_UNAVAILABLE = "BookingServiceUnavailable"  # a booking request answered 503
    CONFIRMED = "BookingConfirmed"  # a booking became CONFIRMED (in the request, or by its consumer)
    REJECTED = "BookingRejected"  # a booking waiting in line was refused there: a seat was taken first
    FAILED = "BookingFailed"  # the consumer gave up on a booking: FAILED, its seats released
    DEAD_LETTERED = "BookingDeadLettered"  # a message left for the DLQ (its last delivery failed)


class Metrics(Protocol):
    def count(self, metric: BookingMetric, strategy: str) -> None:
        """One more of `metric` for bookings of `strategy` (emitted when the invocation ends)."""
        ...


# What a consumer or the persister settling an accepted booking counts (CANCELLED and FAILED found there were
# ended, and counted, by whoever ended them).
_SETTLED = {BookingStatus.CONFIRMED: BookingMetric.CONFIRMED, BookingStatus.REJECTED: BookingMetric.REJECTED}


def count_settled(metrics: Metrics, status: BookingStatus | None, strategy: str) -> None:
    metric = _SETTLED.get(status) if status is not None else None
    if metric is not None:
        metrics.count(metric, strategy)
