"""Create the AWS resources the code relies on, idempotently: one code path for the embedded emulator,
LocalStack and real AWS (only the endpoint differs, from Settings).

The booking queue (redis_async) and the FIFO request queue (fifo_partition), each with a DLQ and a redrive
policy (a FIFO queue's DLQ must be FIFO too). Re-running converges the attributes.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass

from chalicelib.adapters import aws
from chalicelib.config import Settings

DLQ_RETENTION_SECONDS = 14 * 24 * 3600  # the maximum: people need time to inspect and redrive


@dataclass(frozen=True)
class QueuePair:
    queue_url: str
    queue_arn: str
    dlq_url: str
    dlq_arn: str


def _ensure_queue(sqs, name: str, attributes: dict[str, str]) -> tuple[str, str]:
    try:
        url = sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
    except sqs.exceptions.QueueNameExists:
        # AWS refuses create_queue with attributes that differ from the existing queue's: converge them.
        url = sqs.get_queue_url(QueueName=name)["QueueUrl"]
        sqs.set_queue_attributes(QueueUrl=url, Attributes=attributes)
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    return url, arn


def ensure_queue_with_dlq(
    sqs, name: str, dlq_name: str, visibility_timeout: int, max_receive_count: int, fifo: bool = False
) -> QueuePair:
    fifo_attributes = {"FifoQueue": "true"} if fifo else {}
    dlq_url, dlq_arn = _ensure_queue(
        sqs, dlq_name, {**fifo_attributes, "MessageRetentionPeriod": str(DLQ_RETENTION_SECONDS)}
    )
    redrive = json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(max_receive_count)})
    queue_url, queue_arn = _ensure_queue(
        sqs,
        name,
        {**fifo_attributes, "VisibilityTimeout": str(visibility_timeout), "RedrivePolicy": redrive},
    )
    return QueuePair(queue_url, queue_arn, dlq_url, dlq_arn)


def provision(settings: Settings, sqs=None) -> dict[str, QueuePair]:
    sqs = sqs or aws.client("sqs", settings)
    booking = ensure_queue_with_dlq(
        sqs,
        settings.booking_queue_name,
        settings.booking_dlq_name,
        settings.queue_visibility_timeout_seconds,
        settings.max_receive_count,
    )
    fifo = ensure_queue_with_dlq(
        sqs,
        settings.fifo_queue_name,
        settings.fifo_dlq_name,
        settings.queue_visibility_timeout_seconds,
        settings.max_receive_count,
        fifo=True,
    )
    return {"booking": booking, "fifo": fifo}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.parse_args()
    settings = Settings.from_env()
    for name, pair in provision(settings).items():
        print(f"{name}: {pair.queue_url} (DLQ {pair.dlq_url})")


if __name__ == "__main__":
    main()
