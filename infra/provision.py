"""Create the AWS resources the code relies on, idempotently: one code path for the embedded emulator,
LocalStack and real AWS (only the endpoint differs, from Settings).

The booking queue (redis_async) and the FIFO request queue (fifo_partition), each with a DLQ and a redrive
policy (a FIFO queue's DLQ must be FIFO too), and stream_state's request stream and decision changelog
(Kinesis). Re-running converges the queues' attributes.
"""

from __future__ import annotations

import argparse
import contextlib
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


def ensure_stream(kinesis, name: str, shard_count: int) -> str:
    """A Kinesis stream with `shard_count` shards (an existing stream is left as it is) -> its ARN."""
    with contextlib.suppress(kinesis.exceptions.ResourceInUseException):
        kinesis.create_stream(StreamName=name, ShardCount=shard_count)
    kinesis.get_waiter("stream_exists").wait(StreamName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 60})
    return kinesis.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]["StreamARN"]


def provision(settings: Settings, sqs=None, kinesis=None) -> dict[str, QueuePair | str]:
    sqs = sqs or aws.client("sqs", settings)
    kinesis = kinesis or aws.client("kinesis", settings)
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
    streams = {
        name: ensure_stream(kinesis, name, settings.stream_shard_count)
        for name in (settings.request_stream_name, settings.changelog_stream_name)
    }
    return {"booking": booking, "fifo": fifo, **streams}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.parse_args()
    settings = Settings.from_env()
    for name, resource in provision(settings).items():
        if isinstance(resource, QueuePair):
            print(f"{name}: {resource.queue_url} (DLQ {resource.dlq_url})")
        else:
            print(f"stream {name}: {resource}")


if __name__ == "__main__":
    main()
