"""The worker as several processes (infra/local/worker.py): what each process of it polls, against moto
server and LocalStack (host mode) and MariaDB, with processes that really poll at once
(tests/support/poller_process.py: each writes every delivery it gets to an audit table, with its pid), and
the real worker supervising its children (a killed child is started again; SIGTERM stops them all).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import psutil
import pytest

from infra.local.emulator import start_moto_server, stop_moto_server
from tests.support.processes import group_alive
from tests.support.waiting import wait_for

ROOT = Path(__file__).resolve().parents[2]
REGION = "us-east-1"

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def moto_server() -> Iterator[str]:
    server, url = start_moto_server()
    yield url
    stop_moto_server(server)


@pytest.fixture(params=["moto", pytest.param("localstack", marks=pytest.mark.localstack)])
def endpoint(request) -> str:
    """Both emulators: each has its own receive, visibility and FIFO group code, which these tests race."""
    return request.getfixturevalue("moto_server" if request.param == "moto" else "localstack_endpoint")


def client(service: str, endpoint: str) -> Any:
    return boto3.client(
        service,
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


@pytest.fixture()
def audit(database: str, sql: Callable[..., list[tuple]]) -> Iterator[str]:
    """An audit table of this test's own: one row per delivery (its pid, group or shard, body, sequence)."""
    table = f"audit_{uuid.uuid4().hex[:10]}"
    sql(
        f"CREATE TABLE {table} (id BIGINT AUTO_INCREMENT PRIMARY KEY, pid INT NOT NULL,"
        " part VARCHAR(64) NOT NULL, body VARCHAR(64) NOT NULL, seq VARCHAR(128) NOT NULL)"
    )
    yield table
    sql(f"DROP TABLE {table}")


def run_consumers(commands: list[list[str]], go: Path) -> None:
    """Start every consumer, let them all go at once, and wait for each to finish cleanly."""
    processes = [
        subprocess.Popen([sys.executable, "-m", "tests.support.poller_process", *command], cwd=ROOT)
        for command in commands
    ]
    try:
        # The go only once every consumer is ready: opened at once, a consumer still importing boto3 on a
        # loaded machine arrived after the other had drained the queue (CI: "both processes took part",
        # 1 == 2, the FIFO test on LocalStack).
        wait_for(
            lambda: (
                len(list(go.parent.glob(f"{go.name}.ready.*"))) == len(processes)
                or any(process.poll() is not None for process in processes)
            ),
            timeout=60,
            what="every consumer ready",
        )
        go.touch()
        for process in processes:
            assert process.wait(timeout=150) == 0
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()


def deliveries(sql: Callable[..., list[tuple]], table: str) -> list[tuple[int, str, str, str]]:
    return [tuple(row) for row in sql(f"SELECT pid, part, body, seq FROM {table} ORDER BY id")]


def test_two_processes_drain_a_standard_queue_each_message_once(
    endpoint: str, database: str, audit: str, sql: Callable[..., list[tuple]], tmp_path: Path
) -> None:
    sqs = client("sqs", endpoint)
    queue = sqs.create_queue(QueueName=f"drain-{uuid.uuid4().hex[:10]}")["QueueUrl"]
    bodies = [f"m{i:04d}" for i in range(400)]
    for start in range(0, len(bodies), 10):
        entries = [{"Id": str(i), "MessageBody": body} for i, body in enumerate(bodies[start : start + 10])]
        sqs.send_message_batch(QueueUrl=queue, Entries=entries)

    go = tmp_path / "go"
    run_consumers([["sqs", endpoint, queue, database, audit, str(go)] for _ in range(2)], go)

    rows = deliveries(sql, audit)
    counts = Counter(body for _, _, body, _ in rows)
    assert sorted(counts) == bodies and set(counts.values()) == {1}, "every message handled exactly once"
    assert len({pid for pid, *_ in rows}) == 2, "both processes took part"
    attributes = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["All"])["Attributes"]
    assert (
        attributes["ApproximateNumberOfMessages"]
        == attributes["ApproximateNumberOfMessagesNotVisible"]
        == "0"
    )


def test_two_processes_keep_the_order_of_every_fifo_group(
    endpoint: str, database: str, audit: str, sql: Callable[..., list[tuple]], tmp_path: Path
) -> None:
    sqs = client("sqs", endpoint)
    queue = sqs.create_queue(
        QueueName=f"groups-{uuid.uuid4().hex[:10]}.fifo",
        Attributes={"FifoQueue": "true", "ContentBasedDeduplication": "true"},
    )["QueueUrl"]
    groups = [f"g{g}" for g in range(4)]
    per_group = 60
    for n in range(0, per_group, 10):  # interleaved groups, 10 of one group a call
        for group in groups:
            entries = [
                {"Id": str(i), "MessageBody": f"{group}-{n + i:03d}", "MessageGroupId": group}
                for i in range(10)
            ]
            sqs.send_message_batch(QueueUrl=queue, Entries=entries)

    go = tmp_path / "go"
    run_consumers([["sqs", endpoint, queue, database, audit, str(go)] for _ in range(2)], go)

    rows = deliveries(sql, audit)
    by_group: dict[str, list[str]] = defaultdict(list)
    for _, group, body, _ in rows:
        by_group[group].append(body)
    assert sorted(by_group) == groups
    for group in groups:
        assert by_group[group] == [f"{group}-{n:03d}" for n in range(per_group)], (
            f"{group}: in order, once each"
        )
    assert len({pid for pid, *_ in rows}) == 2, "both processes took part"


def test_two_processes_split_the_shards_without_overlap_or_gap_and_resume_at_the_checkpoints(
    endpoint: str, database: str, audit: str, sql: Callable[..., list[tuple]], tmp_path: Path
) -> None:
    kinesis = client("kinesis", endpoint)
    stream = f"split-{uuid.uuid4().hex[:10]}"
    kinesis.create_stream(StreamName=stream, ShardCount=5)
    wait_for(
        lambda: (
            kinesis.describe_stream_summary(StreamName=stream)["StreamDescriptionSummary"]["StreamStatus"]
            == "ACTIVE"
        ),
        10,
        "the stream",
    )
    checkpoints = tmp_path / "checkpoints.json"

    def put(prefix: str, count: int) -> list[str]:
        items = [f"{prefix}{i:03d}" for i in range(count)]
        records = [{"Data": item.encode(), "PartitionKey": f"key-{i % 23}"} for i, item in enumerate(items)]
        for start in range(0, count, 100):
            response = kinesis.put_records(StreamName=stream, Records=records[start : start + 100])
            assert response["FailedRecordCount"] == 0
        return items

    def consume(round_: str) -> list[tuple[int, str, str, str]]:
        go = tmp_path / f"go-{round_}"
        command = ["kinesis", endpoint, stream, database, audit, str(go)]
        run_consumers([[*command, str(index), "2", str(checkpoints)] for index in range(2)], go)
        rows = deliveries(sql, audit)
        sql(f"DELETE FROM {audit}")
        return rows

    first_items = put("a", 300)
    first = consume("first")
    assert sorted(body for _, _, body, _ in first) == first_items, "every record once: no gap, no overlap"
    shards_of: dict[int, set[str]] = defaultdict(set)
    for pid, shard, _, _ in first:
        shards_of[pid].add(shard)
    assert len(shards_of) == 2, "both processes read"
    one, other = shards_of.values()
    assert not one & other, "no shard read by two processes"
    assert len(one | other) == 5, "every shard read"
    for shard in one | other:  # each shard's records in sequence order
        sequences = [int(seq) for _, s, _, seq in first if s == shard]
        assert sequences == sorted(sequences)
    positions = json.loads(checkpoints.read_text())
    assert len(positions) == 5, "both processes' checkpoints kept in the shared file"

    second_items = put("b", 120)
    second = consume("second")
    assert sorted(body for _, _, body, _ in second) == second_items, "resumed after the checkpoints"


# --- the real worker: supervision ---------------------------------------------------------------------------
def worker_children(parent: subprocess.Popen) -> list[psutil.Process]:
    return [
        child for child in psutil.Process(parent.pid).children() if child.status() != psutil.STATUS_ZOMBIE
    ]


def test_the_worker_restarts_a_killed_process_and_stops_them_all(
    services, worker_state: Path, tmp_path: Path
) -> None:
    environment = {**os.environ, "LEDGER_DIR": str(tmp_path / "ledger")}
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "infra.local.worker",
            "--processes",
            "2",
            "--stream-checkpoints",
            str(tmp_path / "checkpoints.json"),
            "--function-name-prefix",
            f"supervised-{uuid.uuid4().hex[:6]}",
        ],
        cwd=ROOT,
        env=environment,
        start_new_session=True,
    )
    try:
        wait_for(lambda: len(worker_children(worker)) == 2, 30, "two worker processes")
        first = {child.pid: child.cmdline() for child in worker_children(worker)}
        victim = next(pid for pid, command in first.items() if command[-1] == "1")  # --process-index 1
        os.kill(victim, signal.SIGKILL)

        def replaced() -> bool:
            now = {child.pid: child.cmdline() for child in worker_children(worker)}
            return len(now) == 2 and victim not in now

        wait_for(replaced, 30, "the killed process restarted")
        now = {child.pid: child.cmdline()[-1] for child in worker_children(worker)}
        assert sorted(now.values()) == ["0", "1"], "the new process has the killed one's share"
        assert set(first) - {victim} <= set(now), "the other process kept running"

        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=30) == 0
        wait_for(lambda: not group_alive(worker), 10, "every worker process gone")
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
        if group_alive(worker):
            os.killpg(worker.pid, signal.SIGKILL)
