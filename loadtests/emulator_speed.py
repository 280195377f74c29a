"""How fast the two local AWS emulators serve what the service uses: moto server vs LocalStack (host mode).

    python -m loadtests.emulator_speed [--messages 600] [--records 300]

Each emulator is started fresh as a process of its own on a free loopback port (moto server:
infra/local/emulator.py; LocalStack: infra/local/localstack.py), driven by one boto3 client from this
process, and stopped. Bounded: a fixed number of calls, loopback only. Prints one table (Markdown).
"""

from __future__ import annotations

import argparse
import contextlib
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator

import boto3

from infra.local.localstack import LocalStack
from tests.support.processes import free_port


@contextlib.contextmanager
def moto_server() -> Iterator[str]:
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "infra.local.emulator", "--port", str(port)])
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(endpoint, timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        yield endpoint
    finally:
        process.terminate()
        process.wait(timeout=10)


@contextlib.contextmanager
def localstack() -> Iterator[str]:
    with LocalStack(free_port()) as endpoint:
        yield endpoint


def rate(count: int, action: Callable[[], object]) -> float:
    started = time.perf_counter()
    action()
    return count / (time.perf_counter() - started)


def measure(endpoint: str, messages: int, records: int) -> dict[str, str]:
    kwargs = {
        "endpoint_url": endpoint,
        "region_name": "us-east-1",
        "aws_access_key_id": "local",
        "aws_secret_access_key": "local",
    }
    sqs, kinesis = boto3.client("sqs", **kwargs), boto3.client("kinesis", **kwargs)
    results: dict[str, str] = {}

    queue = sqs.create_queue(QueueName="speed")["QueueUrl"]
    window = max(messages // 6, 1)
    windows = []
    for _ in range(messages // window):
        windows.append(
            rate(
                window,
                lambda: [sqs.send_message(QueueUrl=queue, MessageBody="x" * 200) for _ in range(window)],
            )
        )
    results["SendMessage, sequential (first → last 1/6 of the queue's depth)"] = (
        f"{windows[0]:.0f} → {windows[-1]:.0f}/s"
    )

    def receive_all() -> None:
        left = messages
        while left > 0:
            got = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10, WaitTimeSeconds=1).get(
                "Messages", []
            )
            if got:
                entries = [{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(got)]
                sqs.delete_message_batch(QueueUrl=queue, Entries=entries)
            left -= len(got)

    results[f"ReceiveMessage + DeleteMessageBatch, 10 at a time, {messages} deep"] = (
        f"{rate(messages, receive_all):.0f} msgs/s"
    )

    def send_batches() -> None:
        for start in range(0, messages, 10):
            entries = [
                {"Id": str(i), "MessageBody": "x" * 200} for i in range(start, min(start + 10, messages))
            ]
            sqs.send_message_batch(QueueUrl=queue, Entries=entries)

    results["SendMessageBatch (10 a call)"] = f"{rate(messages, send_batches):.0f} msgs/s"

    fifo = sqs.create_queue(QueueName="speed.fifo", Attributes={"FifoQueue": "true"})["QueueUrl"]
    fifo_count = messages // 2
    results[f"FIFO SendMessage, one group, {fifo_count} sequential"] = "{:.0f}/s".format(
        rate(
            fifo_count,
            lambda: [
                sqs.send_message(
                    QueueUrl=fifo, MessageBody="x", MessageGroupId="g", MessageDeduplicationId=str(i)
                )
                for i in range(fifo_count)
            ],
        )
    )

    kinesis.create_stream(StreamName="speed", ShardCount=2)
    kinesis.get_waiter("stream_exists").wait(
        StreamName="speed", WaiterConfig={"Delay": 0.2, "MaxAttempts": 300}
    )
    results[f"Kinesis PutRecord, {records} sequential"] = "{:.0f}/s".format(
        rate(
            records,
            lambda: [
                kinesis.put_record(StreamName="speed", Data=b"x" * 200, PartitionKey=str(i % 7))
                for i in range(records)
            ],
        )
    )

    def put_batches() -> None:
        for start in range(0, records, 100):
            entries = [{"Data": b"x" * 200, "PartitionKey": str(i % 7)} for i in range(start, start + 100)]
            kinesis.put_records(StreamName="speed", Records=entries)

    results["Kinesis PutRecords (100 a call)"] = f"{rate(records, put_batches):.0f} records/s"

    def read_all() -> None:
        shards = kinesis.list_shards(StreamName="speed")["Shards"]
        for shard in shards:
            iterator = kinesis.get_shard_iterator(
                StreamName="speed", ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
            )["ShardIterator"]
            while iterator:
                page = kinesis.get_records(ShardIterator=iterator, Limit=100)
                if not page["Records"]:
                    break
                iterator = page.get("NextShardIterator")

    results[f"Kinesis GetRecords (100 a call), all {2 * records}"] = (
        f"{rate(2 * records, read_all):.0f} records/s"
    )
    return results


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--messages", type=int, default=600)
    parser.add_argument("--records", type=int, default=300)
    args = parser.parse_args()
    table: dict[str, dict[str, str]] = {}
    for name, emulator in (("moto server", moto_server), ("LocalStack (host mode)", localstack)):
        started = time.monotonic()
        with emulator() as endpoint:
            print(f"{name}: up in {time.monotonic() - started:.1f} s at {endpoint}", file=sys.stderr)
            table[name] = measure(endpoint, args.messages, args.records)
    names = list(table)
    print(f"| operation | {' | '.join(names)} |")
    print(f"|---|{'---|' * len(names)}")
    for operation in table[names[0]]:
        print(f"| {operation} | {' | '.join(table[name][operation] for name in names)} |")


if __name__ == "__main__":
    main()
