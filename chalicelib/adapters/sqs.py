"""SQS: the booking queue the request path writes to, and the visibility changes of the consumer's backoff."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any


class SqsQueue:
    def __init__(self, sqs_client, queue_name: str) -> None:
        self._sqs = sqs_client
        self._name = queue_name
        self._url: str | None = None
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        if self._url is None:
            with self._lock:
                if self._url is None:
                    self._url = self._sqs.get_queue_url(QueueName=self._name)["QueueUrl"]
        return self._url

    def publish(self, message: Mapping[str, Any]) -> None:
        """Send one message; `message` has "body" and, on FIFO queues, "group_id" and "deduplication_id"."""
        params: dict[str, Any] = {"QueueUrl": self.url, "MessageBody": message["body"]}
        if "group_id" in message:
            params["MessageGroupId"] = message["group_id"]
            params["MessageDeduplicationId"] = message["deduplication_id"]
        self._sqs.send_message(**params)

    def retry_after(self, receipt_handle: str, seconds: int) -> None:
        """Make a failed message visible again after `seconds` (the consumer's exponential backoff)."""
        self._sqs.change_message_visibility(
            QueueUrl=self.url, ReceiptHandle=receipt_handle, VisibilityTimeout=max(0, min(seconds, 43_200))
        )

    def ping(self) -> bool:
        self._sqs.get_queue_attributes(QueueUrl=self.url, AttributeNames=["QueueArn"])
        return True
