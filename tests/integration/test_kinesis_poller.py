"""The local Kinesis event source (infra/local/kinesis_poller.py) against a real moto server on loopback.

Each test owns uniquely named streams. Moto numbers each shard's records 1, 2, 3… (AWS: 56-digit numbers),
never expires shard iterators and never ends a shard's iterator chain, so expiry and closed shards are
injected by a client wrapper.
"""

from __future__ import annotations

import base64
import contextlib
import importlib.util
import json
import logging
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3
import pytest
from aws_lambda_powertools.utilities.parser.models import KinesisDataStreamModel
from botocore.exceptions import ClientError, EndpointConnectionError
from chalice.app import KinesisEvent

from infra.local.emulator import start_moto_server, stop_moto_server
from infra.local.kinesis_poller import (
    CheckpointKey,
    FileCheckpoints,
    KinesisEventSourcePoller,
    MemoryCheckpoints,
    first_failed_index,
    pollers_for_app,
)
from infra.local.sqs_poller import InvalidBatchResponse
from tests.support.waiting import wait_for

REGION = "eu-west-1"
ACCOUNT = "123456789012"  # moto's default account

pytestmark = pytest.mark.timeout(60)


# --- fixtures and helpers ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    server, url = start_moto_server()
    yield url
    stop_moto_server(server)


@pytest.fixture()
def kinesis(endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": REGION,
    }.items():
        monkeypatch.setenv(name, value)
    return boto3.client("kinesis", endpoint_url=endpoint, region_name=REGION)


def make_stream(kinesis: Any, prefix: str, shards: int = 1) -> str:
    name = f"{prefix}-{uuid.uuid4().hex[:10]}"
    kinesis.create_stream(StreamName=name, ShardCount=shards)
    return name


def put(
    kinesis: Any, stream: str, items: list[str], key: Callable[[str], str] = lambda item: "pk"
) -> list[str]:
    """Put one by one (keeps order per partition key); returns the sequence numbers."""
    return [
        kinesis.put_record(StreamName=stream, Data=item.encode(), PartitionKey=key(item))["SequenceNumber"]
        for item in items
    ]


class Recorder:
    """A Lambda-style handler(event, context) that records every invocation, then defers to `behaviour`."""

    def __init__(self, behaviour: Callable[[dict, Any], Any] | None = None) -> None:
        self.behaviour = behaviour
        self.invocations: list[tuple[dict, Any]] = []
        self.lock = threading.Lock()

    def __call__(self, event: dict, context: Any) -> Any:
        with self.lock:
            self.invocations.append((event, context))
        return self.behaviour(event, context) if self.behaviour else None

    def batches(self) -> list[list[str]]:
        return [[data(record) for record in event["Records"]] for event, _ in self.invocations]

    def items(self) -> list[str]:
        return [item for batch in self.batches() for item in batch]


def data(record: dict) -> str:
    return base64.b64decode(record["kinesis"]["data"]).decode()


def sequence_of(event: dict, item: str) -> str:
    return next(r["kinesis"]["sequenceNumber"] for r in event["Records"] if data(r) == item)


def fail(*sequence_numbers: str | None) -> dict:
    return {"batchItemFailures": [{"itemIdentifier": number} for number in sequence_numbers]}


def poller(handler: Any, stream: str, kinesis: Any, **kwargs: Any) -> KinesisEventSourcePoller:
    kwargs.setdefault("function_name", "fn")
    kwargs.setdefault("checkpoints", MemoryCheckpoints())
    kwargs.setdefault("poll_interval_seconds", 0.05)
    kwargs.setdefault("retry_delay_seconds", 0.02)
    return KinesisEventSourcePoller(handler, stream, kinesis, **kwargs)


class Crash(BaseException):
    """The process dying mid-invocation: nothing after the handler call runs, nothing is checkpointed."""


# --- the event and the context -----------------------------------------------------------------------------
def test_events_have_lambdas_kinesis_shape_and_parse_in_chalice_and_powertools(kinesis: Any) -> None:
    stream = make_stream(kinesis, "shape")
    payloads = [b"\x00\xff binary", json.dumps({"seat": "A1"}).encode()]
    numbers = [
        kinesis.put_record(StreamName=stream, Data=payload, PartitionKey=f"key-{i}")["SequenceNumber"]
        for i, payload in enumerate(payloads)
    ]
    put_at = time.time()
    remaining: list[int] = []
    handler = Recorder(lambda event, context: remaining.append(context.get_remaining_time_in_millis()))

    delivered = poller(handler, stream, kinesis, function_name="shape-fn", timeout_seconds=30).run_until_idle(
        idle_seconds=0.3
    )

    assert delivered == 2
    [(event, context)] = handler.invocations
    stream_arn = f"arn:aws:kinesis:{REGION}:{ACCOUNT}:stream/{stream}"
    first, second = event["Records"]
    assert set(event) == {"Records"}
    assert first == {
        "kinesis": {
            "kinesisSchemaVersion": "1.0",
            "partitionKey": "key-0",
            "sequenceNumber": numbers[0],
            "data": base64.b64encode(payloads[0]).decode(),
            "approximateArrivalTimestamp": first["kinesis"]["approximateArrivalTimestamp"],
        },
        "eventSource": "aws:kinesis",
        "eventVersion": "1.0",
        "eventID": f"shardId-000000000000:{numbers[0]}",
        "eventName": "aws:kinesis:record",
        "invokeIdentityArn": f"arn:aws:iam::{ACCOUNT}:role/shape-fn-role",
        "awsRegion": REGION,
        "eventSourceARN": stream_arn,
    }
    arrival = first["kinesis"]["approximateArrivalTimestamp"]
    assert isinstance(arrival, float) and put_at - 10 < arrival <= put_at + 1
    assert round(arrival, 3) == arrival, "epoch seconds with millisecond precision"
    assert json.loads(base64.b64decode(second["kinesis"]["data"])) == {"seat": "A1"}
    assert context.function_name == "shape-fn"
    assert context.invoked_function_arn == f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:shape-fn"
    assert context.memory_limit_in_mb == "128"
    assert 25_000 < remaining[0] <= 30_000

    # Chalice's own event classes read it, as a deployed @app.on_kinesis_record handler would get it ...
    chalice_records = list(KinesisEvent(event, context))
    assert [record.data for record in chalice_records] == payloads
    assert [record.sequence_number for record in chalice_records] == numbers
    assert [record.partition_key for record in chalice_records] == ["key-0", "key-1"]
    assert chalice_records[0].timestamp.replace(tzinfo=UTC).timestamp() == pytest.approx(arrival)
    # ... and so does Powertools' parser model (strict field types).
    parsed = KinesisDataStreamModel.model_validate(event)
    assert [record.kinesis.data for record in parsed.Records] == payloads


# --- order and batching ------------------------------------------------------------------------------------
def test_two_shards_each_in_order_over_many_batches_one_invocation_per_shard_at_a_time(kinesis: Any) -> None:
    stream = make_stream(kinesis, "order", shards=2)
    keys = ["alpha", "bravo", "charlie", "delta", "echo"]
    items = [f"{keys[i % len(keys)]}-{i:02d}" for i in range(40)]
    put(kinesis, stream, items, key=lambda item: item.split("-")[0])
    active: dict[str, int] = {}
    most_active: dict[str, int] = {}
    guard = threading.Lock()

    def behaviour(event: dict, context: Any) -> None:
        shard = {record["eventID"].split(":")[0] for record in event["Records"]}
        assert len(shard) == 1, "a batch never mixes shards"
        (shard_id,) = shard
        with guard:
            active[shard_id] = active.get(shard_id, 0) + 1
            most_active[shard_id] = max(most_active.get(shard_id, 0), active[shard_id])
        time.sleep(0.01)
        with guard:
            active[shard_id] -= 1

    handler = Recorder(behaviour)
    workers = poller(handler, stream, kinesis, batch_size=4)
    workers.start()
    try:
        wait_for(lambda: len(handler.items()) >= len(items))
    finally:
        assert workers.stop(timeout=5)

    assert sorted(handler.items()) == sorted(items), "every record exactly once"
    assert all(len(batch) <= 4 for batch in handler.batches())
    assert set(most_active) == set(workers.shard_ids) and len(most_active) == 2, "both shards had records"
    assert set(most_active.values()) == {1}, "one invocation per shard at a time"
    per_shard: dict[str, list[int]] = {}
    for event, _ in handler.invocations:
        for record in event["Records"]:
            per_shard.setdefault(record["eventID"].split(":")[0], []).append(
                int(record["kinesis"]["sequenceNumber"])
            )
    for numbers in per_shard.values():
        assert numbers == sorted(numbers) and len(set(numbers)) == len(numbers), "strictly in shard order"
    for key in keys:
        delivered = [item for item in handler.items() if item.startswith(key)]
        assert delivered == [item for item in items if item.startswith(key)], f"{key} kept its order"
    for shard_id, numbers in per_shard.items():
        assert workers.checkpoint(shard_id) == str(numbers[-1])


def test_batch_size_is_respected(kinesis: Any) -> None:
    stream = make_stream(kinesis, "size")
    put(kinesis, stream, [f"m{i}" for i in range(10)])
    handler = Recorder()

    assert poller(handler, stream, kinesis, batch_size=4).run_until_idle(idle_seconds=0.3) == 10

    assert [len(batch) for batch in handler.batches()] == [4, 4, 2]


# --- failures and retries ----------------------------------------------------------------------------------
def test_partial_failure_resumes_at_the_lowest_reported_record(kinesis: Any) -> None:
    stream = make_stream(kinesis, "partial")
    items = [f"m{i}" for i in range(10)]
    numbers = put(kinesis, stream, items)

    def behaviour(event: dict, context: Any) -> dict | None:
        if len(handler.invocations) == 1:  # the first batch reports m4 and m2 (unordered: lowest wins)
            return fail(sequence_of(event, "m4"), sequence_of(event, "m2"))
        return {"batchItemFailures": []}

    handler = Recorder(behaviour)
    workers = poller(handler, stream, kinesis, batch_size=5)

    assert workers.run_until_idle(idle_seconds=0.3) == 5 + 5 + 3

    assert handler.batches() == [items[0:5], items[2:7], items[7:10]], "m0 and m1 are not redelivered"
    assert workers.checkpoint("shardId-000000000000") == numbers[-1]


@pytest.mark.parametrize(
    "first_answer",
    [
        pytest.param("raise", id="raises"),
        pytest.param(fail("999999"), id="unknown-identifier"),
        pytest.param(fail(""), id="empty-identifier"),
        pytest.param(fail(None), id="null-identifier"),
        pytest.param({"batchItemFailures": [{"itemIdentifer": "1"}]}, id="misspelled-key"),
        pytest.param({"batchItemFailures": "1"}, id="not-a-list"),
        pytest.param("ok", id="not-an-object"),
    ],
)
def test_a_failed_invocation_redelivers_the_whole_batch(kinesis: Any, first_answer: Any) -> None:
    stream = make_stream(kinesis, "whole")
    items = [f"m{i}" for i in range(6)]
    put(kinesis, stream, items)

    def behaviour(event: dict, context: Any) -> Any:
        if len(handler.invocations) > 1:
            return None
        if first_answer == "raise":
            raise RuntimeError("boom")
        return first_answer

    handler = Recorder(behaviour)

    poller(handler, stream, kinesis, batch_size=4).run_until_idle(idle_seconds=0.3)

    assert handler.batches() == [items[0:4], items[0:4], items[4:6]]


def test_a_timed_out_invocation_redelivers_the_whole_batch(kinesis: Any) -> None:
    stream = make_stream(kinesis, "timeout")
    put(kinesis, stream, ["a", "b"])
    handler = Recorder(lambda event, context: time.sleep(0.3) if len(handler.invocations) == 1 else None)

    poller(handler, stream, kinesis, timeout_seconds=0.2).run_until_idle(idle_seconds=0.3)

    assert handler.batches() == [["a", "b"], ["a", "b"]]


def test_successful_answers_lambda_accepts() -> None:
    numbers = ["11", "12", "13"]
    for response in (None, {}, {"batchItemFailures": None}, {"batchItemFailures": []}):
        assert first_failed_index(response, numbers) is None
    assert first_failed_index(fail("13", "12"), numbers) == 1
    with pytest.raises(InvalidBatchResponse):
        first_failed_index(fail("14"), numbers)


def test_retries_exhausted_skip_the_batch_and_hand_it_to_on_failure(
    kinesis: Any, caplog: pytest.LogCaptureFixture
) -> None:
    stream = make_stream(kinesis, "poison")
    items = [f"m{i}" for i in range(6)]
    put(kinesis, stream, items)
    discarded: list[list[str]] = []
    handler = Recorder(
        lambda event, context: fail(sequence_of(event, "m1")) if "m1" in map(data, event["Records"]) else None
    )
    workers = poller(
        handler,
        stream,
        kinesis,
        batch_size=3,
        maximum_retry_attempts=2,
        on_failure=lambda records: discarded.append([data(record) for record in records]),
    )

    with caplog.at_level(logging.ERROR, logger="infra.local.kinesis_poller"):
        assert workers.run_until_idle(idle_seconds=0.3) == 3 + 3 + 3 + 2

    # The first attempt and two retries fail at m1, then m1..m3 (the retried batch) are skipped.
    assert handler.batches() == [["m0", "m1", "m2"], ["m1", "m2", "m3"], ["m1", "m2", "m3"], ["m4", "m5"]]
    assert discarded == [["m1", "m2", "m3"]]
    assert any("skipped after 2 retries" in record.getMessage() for record in caplog.records)


def test_zero_retries_skip_a_failing_batch_at_once(kinesis: Any) -> None:
    stream = make_stream(kinesis, "no-retry")
    put(kinesis, stream, ["a", "b", "c"])
    discarded: list[int] = []

    def behaviour(event: dict, context: Any) -> None:
        if len(handler.invocations) == 1:
            raise RuntimeError("boom")

    handler = Recorder(behaviour)
    workers = poller(
        handler,
        stream,
        kinesis,
        batch_size=2,
        maximum_retry_attempts=0,
        on_failure=lambda r: discarded.append(len(r)),
    )

    workers.run_until_idle(idle_seconds=0.3)

    assert handler.batches() == [["a", "b"], ["c"]]
    assert discarded == [2]


def test_infinite_retries_block_the_shard_until_the_record_succeeds(kinesis: Any) -> None:
    stream = make_stream(kinesis, "blocked")
    put(kinesis, stream, ["a", "b"])
    handler = Recorder(
        lambda event, context: fail(sequence_of(event, "a")) if len(handler.invocations) <= 4 else None
    )

    workers = poller(handler, stream, kinesis)
    assert workers.run_until_idle(idle_seconds=0.3) == 2 * 5

    assert handler.batches() == [["a", "b"]] * 5


# --- checkpoints -------------------------------------------------------------------------------------------
def test_a_restarted_poller_resumes_after_the_checkpoint_without_duplicates(
    kinesis: Any, tmp_path: Path
) -> None:
    stream = make_stream(kinesis, "resume")
    items = [f"m{i:02d}" for i in range(30)]
    put(kinesis, stream, items)
    path = tmp_path / "checkpoints.json"
    handler = Recorder(lambda event, context: time.sleep(0.05))

    first = poller(handler, stream, kinesis, batch_size=3, checkpoints=FileCheckpoints(path))
    first.start()
    wait_for(lambda: len(handler.items()) >= 9)
    assert first.stop(timeout=5)
    before = handler.items()
    assert 9 <= len(before) < 30, "stopped mid-stream"

    second = poller(handler, stream, kinesis, batch_size=3, checkpoints=FileCheckpoints(path))
    second.run_until_idle(idle_seconds=0.3)

    assert handler.items() == items, "each record exactly once, in order, across the restart"
    [(key, value)] = json.loads(path.read_text()).items()
    assert key.startswith(f"fn|arn:aws:kinesis:{REGION}:{ACCOUNT}:stream/{stream}@") and key.endswith(
        "|shardId-000000000000"
    )
    assert value == second.checkpoint("shardId-000000000000")
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoints.json"], "no temp files left behind"


def test_after_a_crash_mid_batch_the_unfinished_batch_comes_again(kinesis: Any, tmp_path: Path) -> None:
    stream = make_stream(kinesis, "crash")
    items = [f"m{i}" for i in range(7)]
    put(kinesis, stream, items)
    path = tmp_path / "checkpoints.json"

    def crash_on_second_batch(event: dict, context: Any) -> None:
        if len(crashing.invocations) == 2:
            raise Crash

    crashing = Recorder(crash_on_second_batch)
    with pytest.raises(Crash):
        poller(crashing, stream, kinesis, batch_size=3, checkpoints=FileCheckpoints(path)).run_until_idle(
            idle_seconds=0.3
        )
    survivor = Recorder()
    poller(survivor, stream, kinesis, batch_size=3, checkpoints=FileCheckpoints(path)).run_until_idle(
        idle_seconds=0.3
    )

    assert crashing.batches() == [["m0", "m1", "m2"], ["m3", "m4", "m5"]]
    assert survivor.batches() == [["m3", "m4", "m5"], ["m6"]], "the crashed batch again, the first one not"


def test_checkpoints_are_kept_per_function_and_written_atomically(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "nested" / "checkpoints.json"
    one = CheckpointKey("fn-a", "arn:aws:kinesis:eu-west-1:1:stream/s@t", "shardId-000000000000")
    other = one._replace(function_name="fn-b")
    FileCheckpoints(path).put(one, "5")
    FileCheckpoints(path).put(other, "9")
    assert (FileCheckpoints(path).get(one), FileCheckpoints(path).get(other)) == ("5", "9")

    def crash_before_replace(source: str, target: Any) -> None:
        raise OSError("disk gone")

    monkeypatch.setattr("infra.local.kinesis_poller.os.replace", crash_before_replace)
    with pytest.raises(OSError, match="disk gone"):
        FileCheckpoints(path).put(one, "6")
    assert FileCheckpoints(path).get(one) == "5", "the old file is intact"
    assert [p.name for p in path.parent.iterdir()] == ["checkpoints.json"]

    memory = MemoryCheckpoints()
    memory.put(one, "1")
    assert (memory.get(one), memory.get(other)) == ("1", None)


def test_latest_starts_at_the_tip_and_stays_pinned_between_runs(kinesis: Any) -> None:
    stream = make_stream(kinesis, "latest")
    put(kinesis, stream, ["old-1", "old-2"])
    handler = Recorder()
    workers = poller(handler, stream, kinesis, starting_position="LATEST")

    assert workers.run_until_idle(idle_seconds=0.2) == 0
    put(kinesis, stream, ["new-1", "new-2"])
    assert workers.run_until_idle(idle_seconds=0.2) == 2

    assert handler.items() == ["new-1", "new-2"]


# --- the shard iterator and the endpoint -------------------------------------------------------------------
class Faulty:
    """A Kinesis client whose GetRecords answers follow a script (None: the real call)."""

    def __init__(self, client: Any, script: list[Callable[[dict], dict] | Exception | None]) -> None:
        self._client = client
        self.script = script
        self.iterator_requests: list[dict] = []

    def get_records(self, **request: Any) -> dict:
        step = self.script.pop(0) if self.script else None
        if isinstance(step, Exception):
            raise step
        response = self._client.get_records(**request)
        return step(response) if step else response

    def get_shard_iterator(self, **request: Any) -> dict:
        self.iterator_requests.append(request)
        return self._client.get_shard_iterator(**request)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


def expired() -> ClientError:
    error = {"Error": {"Code": "ExpiredIteratorException", "Message": "Iterator expired"}}
    return ClientError(error, "GetRecords")  # type: ignore[arg-type]


def test_an_expired_iterator_is_renewed_after_the_last_record_read(kinesis: Any) -> None:
    stream = make_stream(kinesis, "expired")
    numbers = put(kinesis, stream, ["a", "b", "c"])
    client = Faulty(kinesis, [None, expired()])
    handler = Recorder()

    assert poller(handler, stream, client, batch_size=2).run_until_idle(idle_seconds=0.3) == 3

    assert handler.items() == ["a", "b", "c"]
    assert [r["ShardIteratorType"] for r in client.iterator_requests] == [
        "TRIM_HORIZON",
        "AFTER_SEQUENCE_NUMBER",
    ]
    assert client.iterator_requests[1]["StartingSequenceNumber"] == numbers[1]


def test_transient_errors_back_off_and_delivery_carries_on(
    kinesis: Any, caplog: pytest.LogCaptureFixture
) -> None:
    stream = make_stream(kinesis, "flaky")
    put(kinesis, stream, ["a", "b"])
    client = Faulty(kinesis, [EndpointConnectionError(endpoint_url="http://down"), None])
    handler = Recorder()

    with caplog.at_level(logging.WARNING, logger="infra.local.kinesis_poller"):
        assert poller(handler, stream, client).run_until_idle(idle_seconds=0.3) == 2

    assert handler.items() == ["a", "b"]
    assert any("retry in 0.5 s" in record.getMessage() for record in caplog.records)


def test_a_closed_shard_ends_its_worker(kinesis: Any) -> None:
    stream = make_stream(kinesis, "closed")
    put(kinesis, stream, ["a", "b"])

    def closing(response: dict) -> dict:
        return {key: value for key, value in response.items() if key != "NextShardIterator"}

    client = Faulty(kinesis, [closing])
    handler = Recorder()
    workers = poller(handler, stream, client, function_name="closing-fn")
    workers.start()
    try:
        wait_for(
            lambda: not any(t.name.startswith("kinesis-poller-closing-fn") for t in threading.enumerate())
        )
    finally:
        assert workers.stop(timeout=5)
    assert handler.items() == ["a", "b"]
    started = time.monotonic()
    assert workers.run_until_idle(idle_seconds=5) == 0
    assert time.monotonic() - started < 1, "nothing can arrive on a closed shard: no idle wait"


# --- a real Chalice app with Powertools --------------------------------------------------------------------
@contextlib.contextmanager
def load_app(tmp_path: Path, source: str) -> Iterator[ModuleType]:
    """Import `source` as a real module file, as `chalice local` imports app.py."""
    name = f"tiny_kinesis_app_{uuid.uuid4().hex[:8]}"
    file = tmp_path / f"{name}.py"
    file.write_text(textwrap.dedent(source))
    spec = importlib.util.spec_from_file_location(name, file)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop(name, None)


@pytest.fixture()
def tiny_app(kinesis: Any, tmp_path: Path) -> Iterator[tuple[ModuleType, str, str]]:
    batched = make_stream(kinesis, "app-batch")
    latest = make_stream(kinesis, "app-latest")
    source = f"""
        from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
        from chalice import Chalice

        app = Chalice("tiny")
        processor = BatchProcessor(event_type=EventType.KinesisDataStreams)
        SEEN = []
        BAD_ATTEMPTS = []
        PLAIN = []

        def record_handler(record):
            text = record.kinesis.data_as_text()
            SEEN.append(text)
            if text == "bad" and len(BAD_ATTEMPTS) < 2:
                BAD_ATTEMPTS.append(record.kinesis.sequence_number)
                raise ValueError("not yet")

        @app.route("/")
        def index():
            return {{}}

        @app.on_kinesis_record(stream={batched!r}, batch_size=3, starting_position="TRIM_HORIZON")
        def on_booking(event):
            return process_partial_response(
                event=event.to_dict(),
                record_handler=record_handler,
                processor=processor,
                context=event.context,
            )

        @app.on_kinesis_record(stream={latest!r}, name="plain", maximum_batching_window_in_seconds=1)
        def plain_handler(event):
            PLAIN.extend((r.data, r.partition_key, event.context.function_name) for r in event)
    """
    with load_app(tmp_path, source) as module:
        yield module, batched, latest


def test_pollers_for_app_drive_chalice_handlers_with_powertools_partial_failures(
    kinesis: Any, tiny_app: tuple[ModuleType, str, str]
) -> None:
    module, batched, latest = tiny_app
    checkpoints = MemoryCheckpoints()

    by_batch, plain = pollers_for_app(
        module,
        kinesis,
        function_name_prefix="tiny-local",
        checkpoints=checkpoints,
        poll_interval_seconds=0.05,
        retry_delay_seconds=0.02,
    )

    assert (by_batch.stream_name, by_batch.batch_size, by_batch.starting_position) == (
        batched,
        3,
        "TRIM_HORIZON",
    )
    assert (by_batch.function_name, by_batch.max_batching_window_seconds) == ("tiny-local-on_booking", 0)
    assert (plain.stream_name, plain.batch_size, plain.starting_position) == (latest, 100, "LATEST")
    assert (plain.function_name, plain.max_batching_window_seconds) == ("tiny-local-plain", 1)

    items = ["a", "bad", "c", "d", "e"]
    numbers = put(kinesis, batched, items)
    assert by_batch.run_until_idle(idle_seconds=0.3) == 3 + 3 + 3 + 1

    # "bad" fails twice: each time Powertools reports it, and delivery resumes at it ("a" is done for good).
    assert module.SEEN == ["a", "bad", "c", "bad", "c", "d", "bad", "c", "d", "e"]
    bad_attempts = module.BAD_ATTEMPTS
    assert bad_attempts == [numbers[1]] * 2
    assert by_batch.checkpoint("shardId-000000000000") == numbers[-1]

    put(kinesis, latest, ["before"])
    assert plain.run_until_idle(idle_seconds=0.2) == 0, "LATEST: records older than the mapping are skipped"
    put(kinesis, latest, ["x", "y"], key=lambda item: f"key-{item}")
    started = time.monotonic()
    assert plain.run_until_idle(idle_seconds=0.2) == 2
    assert time.monotonic() - started >= 1, "a batch short of batch_size waits for the batching window"
    assert module.PLAIN == [
        (b"x", "key-x", "tiny-local-plain"),
        (b"y", "key-y", "tiny-local-plain"),
    ]


@pytest.mark.parametrize(
    ("settings", "complaint"),
    [
        ({"batch_size": 0}, "batch_size"),
        ({"batch_size": 10_001}, "batch_size"),
        ({"starting_position": "AT_TIMESTAMP"}, "starting_position"),
        ({"maximum_retry_attempts": -2}, "maximum_retry_attempts"),
        ({"timeout_seconds": 0}, "timeout_seconds"),
        ({"max_batching_window_seconds": 301}, "max_batching_window_seconds"),
    ],
)
def test_settings_aws_would_reject_are_rejected(kinesis: Any, settings: dict, complaint: str) -> None:
    with pytest.raises(ValueError, match=complaint):
        poller(Recorder(), "s", kinesis, **settings)
