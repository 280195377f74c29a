"""An SQS batch as Lambda delivers it -> the consumer, with Powertools' BatchProcessor and Idempotency.

Per record: the consumer settles the booking with a compare-and-set in MySQL, so a redelivered message (or
two copies at once) changes nothing and no idempotency record is kept — nor needed when Redis is away. A
transient failure makes the message visible again after an exponential backoff (2 s, 4 s, 8 s … by receive
count) and reports it in `batchItemFailures`, so only it is retried; a permanent failure (already
compensated) is made visible at once so that SQS moves it to the DLQ after maxReceiveCount. On a FIFO queue
the messages behind a failed one of their group wait for it: reported failed unprocessed, visible again at
once (unless at their last delivery, which is processed rather than left to reach the DLQ uncompensated).
The event source mapping must have FunctionResponseTypes=ReportBatchItemFailures (infra sets it; Chalice
cannot, aws/chalice#2029), and the local poller honours the same response.
"""

from __future__ import annotations

import logging
from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from chalicelib.adapters.observability import correlated
from chalicelib.adapters.sqs import SqsQueue
from chalicelib.config import Settings
from chalicelib.domain.messages import BookingRequested, InvalidMessage
from chalicelib.services.booking_events import BookingEventConsumer, PermanentFailure, read
from chalicelib.strategies.fifo_partition.line import BatchLine, WaitingInLine

log = logging.getLogger(__name__)


class BookingBatchHandler:
    def __init__(
        self,
        consumer: BookingEventConsumer,
        queue: SqsQueue,
        settings: Settings,
    ) -> None:
        self._consumer = consumer
        self._queue = queue
        self._settings = settings

    def __call__(self, event: dict, context: Any) -> dict:
        # raise_on_entire_batch_failure=False: every failure is already reported per message (and its
        # visibility set); raising would make Lambda retry the whole batch, successes included.
        processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)
        line = BatchLine(self._settings.max_receive_count)  # FIFO: fifo_partition's in-group order
        skipped: list[SQSRecord] = []

        def handle(record: SQSRecord) -> str:
            group = record.attributes.message_group_id
            try:
                line.check(group, int(record.attributes.approximate_receive_count or 1))
            except WaitingInLine:
                skipped.append(record)  # reported failed, unprocessed
                raise
            try:
                return self._handle(record)
            except Exception:
                line.failed(group)
                raise

        response = process_partial_response(
            event=event, record_handler=handle, processor=processor, context=context
        )
        for record in skipped:
            # Back at once: SQS hands out nothing of the group while its failed message backs off, so the
            # line resumes in order then, not after a whole visibility timeout.
            self._make_visible_after(record, 0)
        return response

    def _handle(self, record: SQSRecord) -> str:
        read_as = read(record.body)  # once: its booking id is the log lines' correlation id
        with correlated(read_as.booking_id):
            return self._settle(record, read_as)

    def _settle(self, record: SQSRecord, read_as: BookingRequested | InvalidMessage) -> str:
        receive_count = int(record.attributes.approximate_receive_count or 1)
        try:
            return self._consumer.settle(record.body, read_as, receive_count, record.message_id).value
        except PermanentFailure:
            self._make_visible_after(record, 0)
            raise
        except Exception:  # transient: MySQL away, a lock wait, a bug a deploy may fix
            self._make_visible_after(record, self._settings.backoff_seconds(receive_count))
            raise

    def _make_visible_after(self, record: SQSRecord, seconds: int) -> None:
        try:
            self._queue.retry_after(record.receipt_handle, seconds)
        except Exception as exc:  # the queue's own visibility timeout then paces the retry
            log.warning("could not set visibility %d s on message %s: %s", seconds, record.message_id, exc)
