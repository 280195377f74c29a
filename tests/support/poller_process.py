"""One of several consumer processes of tests/integration/test_worker_processes.py: the local event source
pollers (infra/local/sqs_poller.py, kinesis_poller.py) as a process of the worker runs them, with a handler
that writes every record it is given to an audit table in MySQL (one row per delivery, with its pid).

    python -m tests.support.poller_process sqs <endpoint> <queue url> <database url> <table> <go file>
    python -m tests.support.poller_process kinesis <endpoint> <stream> <database url> <table> <go file>
        <index> <count> <checkpoint file>

Every process waits for <go file> to exist before its first receive, so the processes really poll at once;
each polls until its source has been idle for a second and a half, then exits 0.
"""

from __future__ import annotations

import base64
import os
import sys
import time
from urllib.parse import urlsplit

import boto3
import pymysql

REGION = "us-east-1"


def connect(database_url: str) -> pymysql.Connection:
    url = urlsplit(database_url)
    return pymysql.connect(
        host=url.hostname,
        port=url.port or 3306,
        user=url.username or "root",
        password=url.password or "",
        database=url.path.lstrip("/"),
        autocommit=True,
    )


def wait_for_go(path: str, timeout: float = 30) -> None:
    """Say this process is ready (`<go>.ready.<pid>`: imports done, poller built), then wait for the go."""
    with open(f"{path}.ready.{os.getpid()}", "w"):
        pass
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise SystemExit(f"{path} never appeared")
        time.sleep(0.01)


def main() -> None:
    kind, endpoint, source, database_url, table, go = sys.argv[1:7]
    connection = connect(database_url)
    pid = os.getpid()

    def record(items: list[tuple[str, str, str]]) -> None:  # (group or shard, body, sequence)
        with connection.cursor() as cursor:
            cursor.executemany(
                f"INSERT INTO {table} (pid, part, body, seq) VALUES (%s, %s, %s, %s)",
                [(pid, part, body, seq) for part, body, seq in items],
            )

    client = boto3.client(
        kind,
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    if kind == "sqs":
        from infra.local.sqs_poller import SqsEventSourcePoller

        def on_messages(event: dict, context: object) -> None:
            record(
                [
                    (
                        r["attributes"].get("MessageGroupId", ""),
                        r["body"],
                        r["attributes"].get("SequenceNumber", ""),
                    )
                    for r in event["Records"]
                ]
            )
            time.sleep(0.005)  # a handler's own work: the other process gets its turn meanwhile

        poller = SqsEventSourcePoller(on_messages, source, client, function_name="audit", wait_time_seconds=1)
        wait_for_go(go)
        poller.run_until_idle(idle_seconds=1.5, timeout=120)
    else:
        from infra.local.kinesis_poller import FileCheckpoints, KinesisEventSourcePoller

        index, count, checkpoint_file = int(sys.argv[7]), int(sys.argv[8]), sys.argv[9]

        def on_records(event: dict, context: object) -> None:
            record(
                [
                    (
                        r["eventID"].split(":")[0],
                        base64.b64decode(r["kinesis"]["data"]).decode(),
                        r["kinesis"]["sequenceNumber"],
                    )
                    for r in event["Records"]
                ]
            )

        poller = KinesisEventSourcePoller(
            on_records,
            source,
            client,
            function_name="audit",
            batch_size=25,
            checkpoints=FileCheckpoints(checkpoint_file),
            poll_interval_seconds=0.05,
            shard_share=(index, count),
        )
        wait_for_go(go)
        poller.run_until_idle(idle_seconds=1.5, timeout=120)
    connection.close()


if __name__ == "__main__":
    main()
