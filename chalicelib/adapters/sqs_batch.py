"""An SQS batch as Lambda delivers it -> the consumer, with Powertools' BatchProcessor and Idempotency.

Per record: a redelivered message is answered from the idempotency record instead of running twice; a
transient failure makes the message visible again after an exponential backoff (1 s, 2 s, 4 s … by receive
count) and reports it in `batchItemFailures`, so only it is retried; a permanent failure (already
compensated) is made visible at once so that SQS moves it to the DLQ after maxReceiveCount.
The event source mapping must have FunctionResponseTypes=ReportBatchItemFailures (infra sets it; Chalice
cannot, aws/chalice#2029), and the local poller honours the same response.
"""

from __future__ import annotations

import logging
from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from chalicelib.adapters.idempotency import PowertoolsIdempotency
from chalicelib.adapters.sqs import SqsQueue
from chalicelib.config import Settings
from chalicelib.consumers.booking_events import BookingEventConsumer, PermanentFailure

log = logging.getLogger(__name__)


class BookingBatchHandler:
    def __init__(
        self,
        consumer: BookingEventConsumer,
        queue: SqsQueue,
        idempotency: PowertoolsIdempotency,
        settings: Settings,
    ) -> None:
        self._consumer = consumer
        self._queue = queue
        self._idempotency = idempotency
        self._settings = settings

    def __call__(self, event: dict, context: Any) -> dict:
        # raise_on_entire_batch_failure=False: every failure is already reported per message (and its
        # visibility set); raising would make Lambda retry the whole batch, successes included.
        processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)
        return process_partial_response(
            event=event,
            record_handler=lambda record: self._handle(record, context),
            processor=processor,
            context=context,
        )

    def _handle(self, record: SQSRecord, context: Any) -> str:
        receive_count = int(record.attributes.approximate_receive_count or 1)
        try:
            return self._idempotency.run_once(
                "booking-event",
                record.body,
                {},
                lambda: {
                    "status": self._consumer.handle(record.body, receive_count, record.message_id).value
                },
                lambda_context=context,
            )["status"]
        except PermanentFailure:
            self._make_visible_after(record, 0)
            raise
        except Exception:  # transient, including IdempotencyInProgress (a concurrent duplicate delivery)
            self._make_visible_after(record, self._settings.backoff_seconds(receive_count))
            raise

    def _make_visible_after(self, record: SQSRecord, seconds: int) -> None:
        try:
            self._queue.retry_after(record.receipt_handle, seconds)
        except Exception as exc:  # the queue's own visibility timeout then paces the retry
            log.warning("could not set visibility %d s on message %s: %s", seconds, record.message_id, exc)
