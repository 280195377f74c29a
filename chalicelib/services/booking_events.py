"""What happens to one booking message, whatever delivered it (Lambda's SQS trigger or the local poller).

Outcomes: the booking is made final and the message is done; or a TransientFailure asks for a retry after a
backoff; or, when no retry can help (a poison message, or the last allowed delivery), the booking is
compensated (FAILED, seats released, reconcile_log row) and a PermanentFailure lets the message go on to the
DLQ for people to inspect.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from chalicelib.domain.errors import ServiceUnavailable
from chalicelib.domain.messages import BookingRequested, InvalidMessage
from chalicelib.domain.models import BookingStatus, ReconcileEntry
from chalicelib.services.metrics import UNKNOWN_STRATEGY, BookingMetric, Metrics, count_settled
from chalicelib.services.ports import AsyncBookingStrategy, BookingStore

log = logging.getLogger(__name__)
MAX_LOGGED_BODY = 2_000


class TransientFailure(Exception):
    """Retry this message later (exponential backoff)."""


class PermanentFailure(Exception):
    """This message can never succeed; it has been compensated and should reach the DLQ."""


def read(body: str) -> BookingRequested | InvalidMessage:
    """A message body as the consumer reads it: the message, or why it is poison."""
    try:
        return BookingRequested.from_json(body)
    except InvalidMessage as exc:
        return exc


class BookingEventConsumer:
    def __init__(
        self,
        strategies: Mapping[str, AsyncBookingStrategy],
        bookings: BookingStore,
        max_receive_count: int,
        metrics: Metrics,
    ) -> None:
        self._strategies = strategies
        self._bookings = bookings
        self._max_receive_count = max_receive_count
        self._metrics = metrics

    def handle(self, body: str, receive_count: int, message_id: str) -> BookingStatus:
        return self.settle(body, read(body), receive_count, message_id)

    def settle(
        self, body: str, read_as: BookingRequested | InvalidMessage, receive_count: int, message_id: str
    ) -> BookingStatus:
        """`handle` for a body already read (`read`): the batch handler reads it first, for its log lines'
        correlation id, and the message is not parsed a second time here."""
        try:
            if isinstance(read_as, InvalidMessage):
                raise read_as
            message = read_as
            strategy = self._strategy(message)
        except InvalidMessage as exc:
            self._give_up_on_poison(body, message_id, exc)
            self._count_if_dead_lettered(receive_count, UNKNOWN_STRATEGY)
            raise PermanentFailure(str(exc)) from exc
        try:
            status = strategy.finish(message)
        except Exception as exc:
            # Anything else (MySQL or Redis down, a bug a deploy may fix) is worth retrying, up to the limit.
            if receive_count < self._max_receive_count:
                log.warning(
                    "booking %s: attempt %d failed, will retry: %r", message.booking_id, receive_count, exc
                )
                raise TransientFailure(repr(exc)) from exc
            reason = f"gave up after {receive_count} attempts: {_short(exc)}"
            log.error("booking %s: %s", message.booking_id, reason)
            if self._give_up(strategy, message.booking_id, reason, message) is BookingStatus.FAILED:
                self._metrics.count(BookingMetric.FAILED, message.strategy)
            self._count_if_dead_lettered(receive_count, message.strategy)
            raise PermanentFailure(reason) from exc
        count_settled(self._metrics, status, message.strategy)
        return status

    def _count_if_dead_lettered(self, receive_count: int, strategy: str) -> None:
        """A permanent failure at the last allowed delivery is the message's last: SQS moves it to the DLQ
        (before that, a poison message is only made visible again at once)."""
        if receive_count >= self._max_receive_count:
            self._metrics.count(BookingMetric.DEAD_LETTERED, strategy)

    def _strategy(self, message: BookingRequested) -> AsyncBookingStrategy:
        strategy = self._strategies.get(message.strategy)
        if strategy is None:
            raise InvalidMessage(
                f"no asynchronous strategy {message.strategy!r}", booking_id=message.booking_id
            )
        return strategy

    def _give_up_on_poison(self, body: str, message_id: str, exc: InvalidMessage) -> None:
        reason = f"poison message: {exc}"
        log.error("message %s: %s", message_id, reason)
        if exc.booking_id is not None:
            # Enough is readable to find the booking: its row in MySQL says which seats to give back.
            strategy = self._strategies.get("redis_async") or next(iter(self._strategies.values()))
            self._give_up(strategy, exc.booking_id, reason, None)
        self._bookings.log_reconcile(
            ReconcileEntry(
                action="poison_message",
                booking_id=exc.booking_id,
                message_id=message_id,
                detail={"reason": str(exc), "body": body[:MAX_LOGGED_BODY]},
            )
        )

    @staticmethod
    def _give_up(
        strategy: AsyncBookingStrategy, booking_id: str, reason: str, message: BookingRequested | None
    ) -> BookingStatus | None:
        """-> the booking's status now (None: not known here)."""
        try:
            return strategy.give_up(booking_id, reason, message)
        except ServiceUnavailable as exc:
            # MySQL is down: the booking stays PENDING, its seats held, until MySQL answers again; then the
            # reconcile job fails it (past the hold deadline), or a DLQ redrive settles it first.
            log.error("booking %s: not given up yet, MySQL is away: %s", booking_id, exc)
            return None


def _short(exc: Exception) -> str:
    text = f"{type(exc).__name__}: {exc}"
    return text if len(text) <= 300 else text[:297] + "..."
