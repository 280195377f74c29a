"""infra/provision.py against both AWS emulators the project runs on: moto server (the session's) and
LocalStack in host mode (the session's own, tests/support/localstack.py; marked `localstack`). Each test
provisions resources of its own names through the app's own clients (chalicelib/adapters/aws.py)."""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import Iterator

import pytest

from chalicelib.adapters import aws
from chalicelib.config import Settings
from infra.provision import DLQ_RETENTION_SECONDS, QueuePair, provision


@pytest.fixture(params=["moto", pytest.param("localstack", marks=pytest.mark.localstack)])
def world(request, settings: Settings) -> Iterator[Settings]:
    endpoint = request.getfixturevalue("moto_endpoint" if request.param == "moto" else "localstack_endpoint")
    run = f"prov-{uuid.uuid4().hex[:8]}"
    own = settings.replace(
        aws_endpoint_url=endpoint,
        booking_queue_name=f"{run}-booking",
        booking_dlq_name=f"{run}-booking-dlq",
        fifo_queue_name=f"{run}-requests.fifo",
        fifo_dlq_name=f"{run}-requests-dlq.fifo",
        request_stream_name=f"{run}-requests",
        changelog_stream_name=f"{run}-changelog",
        max_receive_count=2,
    )
    yield own
    sqs, kinesis = aws.client("sqs", own), aws.client("kinesis", own)
    for name in (own.booking_queue_name, own.booking_dlq_name, own.fifo_queue_name, own.fifo_dlq_name):
        with contextlib.suppress(sqs.exceptions.QueueDoesNotExist):
            sqs.delete_queue(QueueUrl=sqs.get_queue_url(QueueName=name)["QueueUrl"])
    for name in (own.request_stream_name, own.changelog_stream_name):
        with contextlib.suppress(kinesis.exceptions.ResourceNotFoundException):
            kinesis.delete_stream(StreamName=name)


def _attributes(sqs, url: str) -> dict[str, str]:
    return sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]


def test_provisioning_creates_everything_and_a_rerun_converges(world: Settings) -> None:
    first = provision(world)
    changed = world.replace(max_receive_count=4, queue_visibility_timeout_seconds=45)
    second = provision(changed)
    assert first == second, "a rerun finds the same queues and streams"

    sqs, kinesis = aws.client("sqs", world), aws.client("kinesis", world)
    for name, fifo in (("booking", False), ("fifo", True)):
        pair = second[name]
        assert isinstance(pair, QueuePair)
        queue, dlq = _attributes(sqs, pair.queue_url), _attributes(sqs, pair.dlq_url)
        redrive = json.loads(queue["RedrivePolicy"])
        assert redrive["deadLetterTargetArn"] == pair.dlq_arn
        assert int(redrive["maxReceiveCount"]) == 4, "the rerun converged the redrive policy"
        assert queue["VisibilityTimeout"] == "45", "the rerun converged the visibility timeout"
        assert dlq["MessageRetentionPeriod"] == str(DLQ_RETENTION_SECONDS)
        assert (queue.get("FifoQueue") == "true") is fifo and (dlq.get("FifoQueue") == "true") is fifo

    for name in (world.request_stream_name, world.changelog_stream_name):
        summary = kinesis.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]
        assert summary["StreamARN"] == second[name]
        assert summary["StreamStatus"] == "ACTIVE"
        assert summary["OpenShardCount"] == world.stream_shard_count


@pytest.mark.parametrize("queue", ["booking", "fifo"])
def test_a_message_received_max_receive_count_times_moves_to_the_dlq(world: Settings, queue: str) -> None:
    pair = provision(world)[queue]
    assert isinstance(pair, QueuePair)
    sqs = aws.client("sqs", world)
    group = {"MessageGroupId": "section-1", "MessageDeduplicationId": "m1"} if queue == "fifo" else {}
    sqs.send_message(QueueUrl=pair.queue_url, MessageBody='{"poison": true}', **group)

    counts = []
    for _ in range(world.max_receive_count + 1):
        # Never deleted, and visible again at once (as after a consumer's failure with no backoff).
        got = sqs.receive_message(
            QueueUrl=pair.queue_url,
            WaitTimeSeconds=1,
            VisibilityTimeout=0,
            MessageSystemAttributeNames=["ApproximateReceiveCount"],
        ).get("Messages", [])
        counts += [int(m["Attributes"]["ApproximateReceiveCount"]) for m in got]
    assert counts == [1, 2], "received maxReceiveCount times, then gone from the source queue"

    dead = sqs.receive_message(
        QueueUrl=pair.dlq_url, WaitTimeSeconds=2, MessageSystemAttributeNames=["All"]
    ).get("Messages", [])
    assert [m["Body"] for m in dead] == ['{"poison": true}']
    if queue == "fifo":
        assert dead[0]["Attributes"]["MessageGroupId"] == "section-1", "a FIFO dead letter keeps its group"
