"""The emulator's own ceilings, measured in the same run on the same emulator as the bench's strategies: how
fast it takes what the service sends (SQS SendMessage, batched sends, FIFO sends, Kinesis PutRecord) and how
fast a consumer can take it back (ReceiveMessage + DeleteMessageBatch, GetRecords).

Each operation runs a fixed number of calls from this process on queues and streams of its own (never the
stack's), sequentially on one client and, where the service calls it from many request threads at once, from
`threads` threads with a client each. Built on loadtests/emulator_speed.py's `rate`.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import boto3
from botocore.config import Config

from loadtests.emulator_speed import rate


def _client(service: str, endpoint: str):
    return boto3.client(
        service,
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="local",
        aws_secret_access_key="local",
        config=Config(max_pool_connections=64, retries={"max_attempts": 2}),
    )


def _threaded(count: int, threads: int, make_client: Callable[[], object], one: Callable) -> float:
    """count calls of one(client, i) spread over `threads` threads, each with its own client -> calls/s."""
    clients = [make_client() for _ in range(threads)]
    local = threading.local()
    pool = iter(clients)
    lock = threading.Lock()

    def call(i: int) -> None:
        if not hasattr(local, "client"):
            with lock:
                local.client = next(pool)
        one(local.client, i)

    with ThreadPoolExecutor(threads) as executor:
        return rate(count, lambda: list(executor.map(call, range(count))))


def _drain(sqs, queue: str, expected: int, timeout: float = 120) -> None:
    left, deadline = expected, time.monotonic() + timeout
    while left > 0 and time.monotonic() < deadline:
        got = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10, WaitTimeSeconds=1).get(
            "Messages", []
        )
        if got:
            entries = [{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(got)]
            sqs.delete_message_batch(QueueUrl=queue, Entries=entries)
        left -= len(got)


def _receive_delete(endpoint: str, queue: str, messages: int, consumers: int) -> float:
    """ReceiveMessage (10) + DeleteMessageBatch by `consumers` pollers, as the worker does -> msgs/s."""
    clients = [_client("sqs", endpoint) for _ in range(consumers)]
    left = [messages]
    lock = threading.Lock()

    def consume(sqs) -> None:
        idle_polls = 0
        while idle_polls < 2:
            with lock:
                if left[0] <= 0:
                    return
            got = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10, WaitTimeSeconds=1).get(
                "Messages", []
            )
            if not got:
                idle_polls += 1
                continue
            entries = [{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(got)]
            sqs.delete_message_batch(QueueUrl=queue, Entries=entries)
            with lock:
                left[0] -= len(got)

    def run_all() -> None:
        threads = [threading.Thread(target=consume, args=(c,)) for c in clients]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    return rate(messages, run_all)


def measure(endpoint: str, messages: int = 1000, records: int = 500, threads: int = 8, consumers: int = 2):
    """-> list of {"operation", "unit", "rate", "calls", "threads"} rows."""
    tag = uuid.uuid4().hex[:8]
    sqs, kinesis = _client("sqs", endpoint), _client("kinesis", endpoint)
    rows: list[dict] = []

    def row(operation: str, value: float, calls: int, threads_used: int, unit: str = "msgs/s") -> None:
        rows.append(
            {
                "operation": operation,
                "rate": round(value, 1),
                "unit": unit,
                "calls": calls,
                "threads": threads_used,
            }
        )

    body = "x" * 300  # about the size of a booking.requested message
    queue = sqs.create_queue(QueueName=f"ceiling-{tag}")["QueueUrl"]
    row(
        "SQS SendMessage (1 client)",
        rate(messages, lambda: [sqs.send_message(QueueUrl=queue, MessageBody=body) for _ in range(messages)]),
        messages,
        1,
    )
    row(
        f"SQS SendMessage ({threads} threads)",
        _threaded(
            messages,
            threads,
            lambda: _client("sqs", endpoint),
            lambda c, i: c.send_message(QueueUrl=queue, MessageBody=body),
        ),
        messages,
        threads,
    )

    def send_batches() -> None:
        for start in range(0, messages, 10):
            entries = [{"Id": str(i), "MessageBody": body} for i in range(start, min(start + 10, messages))]
            sqs.send_message_batch(QueueUrl=queue, Entries=entries)

    row("SQS SendMessageBatch (10 a call, 1 client)", rate(messages, send_batches), messages // 10, 1)
    row(
        f"SQS ReceiveMessage + DeleteMessageBatch (10 a call, {consumers} pollers)",
        _receive_delete(endpoint, queue, 3 * messages, consumers),
        3 * messages,
        consumers,
    )

    fifo = sqs.create_queue(QueueName=f"ceiling-{tag}.fifo", Attributes={"FifoQueue": "true"})["QueueUrl"]
    row(
        f"SQS FIFO SendMessage, one group ({threads} threads)",
        _threaded(
            messages,
            threads,
            lambda: _client("sqs", endpoint),
            lambda c, i: c.send_message(
                QueueUrl=fifo, MessageBody=body, MessageGroupId="g", MessageDeduplicationId=f"{tag}-{i}"
            ),
        ),
        messages,
        threads,
    )
    row(
        "SQS FIFO ReceiveMessage + DeleteMessageBatch, one group (10 a call)",
        _receive_delete(endpoint, fifo, messages, 1),
        messages,
        1,
    )

    stream = f"ceiling-{tag}"
    kinesis.create_stream(StreamName=stream, ShardCount=2)
    kinesis.get_waiter("stream_exists").wait(
        StreamName=stream, WaiterConfig={"Delay": 0.2, "MaxAttempts": 300}
    )
    data = body.encode()
    row(
        "Kinesis PutRecord (1 client)",
        rate(
            records,
            lambda: [
                kinesis.put_record(StreamName=stream, Data=data, PartitionKey=str(i % 7))
                for i in range(records)
            ],
        ),
        records,
        1,
        "records/s",
    )
    row(
        f"Kinesis PutRecord ({threads} threads)",
        _threaded(
            records,
            threads,
            lambda: _client("kinesis", endpoint),
            lambda c, i: c.put_record(StreamName=stream, Data=data, PartitionKey=str(i % 7)),
        ),
        records,
        threads,
        "records/s",
    )

    def put_batches() -> None:
        for start in range(0, records, 100):
            entries = [
                {"Data": data, "PartitionKey": str(i % 7)} for i in range(start, min(start + 100, records))
            ]
            kinesis.put_records(StreamName=stream, Records=entries)

    row("Kinesis PutRecords (100 a call)", rate(records, put_batches), records // 100, 1, "records/s")

    def read_all() -> None:
        for shard in kinesis.list_shards(StreamName=stream)["Shards"]:
            iterator = kinesis.get_shard_iterator(
                StreamName=stream, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
            )["ShardIterator"]
            while iterator:
                page = kinesis.get_records(ShardIterator=iterator, Limit=100)
                if not page["Records"]:
                    break
                iterator = page.get("NextShardIterator")

    row("Kinesis GetRecords (100 a call)", rate(3 * records, read_all), 3 * records, 1, "records/s")
    for name in (queue, fifo):
        sqs.delete_queue(QueueUrl=name)
    kinesis.delete_stream(StreamName=stream)
    return rows
