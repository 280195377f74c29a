"""A local stand-in for Lambda's Kinesis event source mapping: read each shard in order, invoke the real
Chalice handler, checkpoint. `chalice local` never fires `@app.on_kinesis_record`; this does, against moto
server, LocalStack or AWS (boto3 calls only).

What a deployed handler sees, and what happens to the records after, follows the mapping with
`FunctionResponseTypes: [ReportBatchItemFailures]`:

* one worker per shard (ParallelizationFactor 1): a shard's records are delivered strictly in order, and a
  shard is blocked while its batch is retried; a worker of several processes (infra/local/worker.py) reads
  only its share of the shards (`shard_share`), so every shard has exactly one reader;
* the event is Lambda's Kinesis event (base64 data, `shardId-…:<seq>` event ids, float arrival times);
* the mapping, not the function, owns the position: a checkpoint per function + stream + shard, advanced only
  after a successful invocation; a new poller resumes after it, or at `starting_position` without one;
* an exception, a timeout or an invalid response retries the whole batch; a valid `batchItemFailures`
  checkpoints just before the lowest reported record, and the next batch starts there;
* `maximum_retry_attempts` (-1: until the records expire, the AWS default): once exhausted the batch is
  skipped and handed to `on_failure`, as the mapping's on-failure destination would receive it.

Not reproduced: resharding (shards are listed once, at start), bisecting failed batches, tumbling windows,
MaximumRecordAgeInSeconds, aggregated (KPL) records, and killing a handler at its timeout (it runs to the end,
then the batch counts as failed).
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import logging
import os
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC
from pathlib import Path
from types import ModuleType
from typing import Any, NamedTuple, Protocol

from botocore.exceptions import BotoCoreError, ClientError
from chalice.app import KinesisEventConfig

# The SQS poller's execution environment, context, backoff and ReportBatchItemFailures validation apply here
# unchanged.
from infra.local.sqs_poller import (
    Backoff,
    Instance,
    InvalidBatchResponse,
    LambdaContext,
    handler_for,
    reported_failures,
)

Handler = Callable[[dict, Any], Any]
KinesisRecord = dict[str, Any]  # one record of a GetRecords response
OnFailure = Callable[[list[dict[str, Any]]], None]

STARTING_POSITIONS = ("TRIM_HORIZON", "LATEST")
LAMBDA_MAX_BATCH = 10_000  # the mapping's BatchSize limit for streams, also GetRecords' Limit maximum
MAX_RETRY_ATTEMPTS = 10_000
DEFAULT_MEMORY_MB = 128
_RETRY_DELAY_MAX_SECONDS = 10.0


# --- checkpoints -------------------------------------------------------------------------------------------
class CheckpointKey(NamedTuple):
    function_name: str
    stream: str  # the stream ARN and its creation time: a re-created stream must not inherit old positions
    shard_id: str

    def __str__(self) -> str:
        return "|".join(self)


class Checkpoints(Protocol):
    """Where a mapping keeps, per function, stream and shard, the last sequence number it has processed."""

    def get(self, key: CheckpointKey) -> str | None: ...

    def put(self, key: CheckpointKey, sequence_number: str) -> None: ...


class MemoryCheckpoints:
    """Checkpoints that live as long as the object (share one between pollers to simulate restarts)."""

    def __init__(self) -> None:
        self._positions: dict[str, str] = {}
        self._lock = threading.Lock()

    def get(self, key: CheckpointKey) -> str | None:
        with self._lock:
            return self._positions.get(str(key))

    def put(self, key: CheckpointKey, sequence_number: str) -> None:
        with self._lock:
            self._positions[str(key)] = sequence_number


_path_locks: dict[Path, threading.Lock] = {}
_path_locks_guard = threading.Lock()


def _lock_for(path: Path) -> threading.Lock:
    # One lock per file, not per object: two FileCheckpoints on one path must not lose each other's writes.
    with _path_locks_guard:
        return _path_locks.setdefault(path, threading.Lock())


class FileCheckpoints:
    """Checkpoints in a JSON file ({"<function>|<stream>|<shard>": "<sequence number>"}), surviving restarts.

    Every write replaces the file atomically (temp file + os.replace): a crash leaves the old or the new
    positions, never a torn file. Safe across threads (a lock per path) and across processes (an exclusive
    `flock` on the file's directory around every read-modify-write: the file itself is replaced by each
    write, so it cannot carry the lock): the worker's processes share one file, each writing the shards it
    reads, and none may put back positions another has just advanced."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path).resolve()
        self._lock = _lock_for(self.path)

    def get(self, key: CheckpointKey) -> str | None:
        with self._lock:
            return self._load().get(str(key))

    def put(self, key: CheckpointKey, sequence_number: str) -> None:
        with self._lock, self._across_processes():
            positions = self._load()
            positions[str(key)] = sequence_number
            self._write(positions)

    @contextlib.contextmanager
    def _across_processes(self) -> Iterator[None]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        directory = os.open(self.path.parent, os.O_RDONLY)
        try:
            fcntl.flock(directory, fcntl.LOCK_EX)  # released when closed, or when the process dies
            yield
        finally:
            os.close(directory)

    def _load(self) -> dict[str, str]:
        try:
            return json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}

    def _write(self, positions: dict[str, str]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        descriptor, temporary = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.")
        try:
            with os.fdopen(descriptor, "w", encoding="utf-8") as file:
                json.dump(positions, file, indent=2, sort_keys=True)
                file.flush()
                os.fsync(file.fileno())
            os.replace(temporary, self.path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temporary)
            raise


# --- the event ---------------------------------------------------------------------------------------------
def parse_stream_arn(stream_arn: str) -> tuple[str, str, str]:
    """arn:aws:kinesis:<region>:<account>:stream/<name> -> (region, account, name)."""
    parts = stream_arn.split(":")
    if len(parts) != 6 or parts[2] != "kinesis" or not parts[5].startswith("stream/"):
        raise ValueError(f"not a Kinesis stream ARN: {stream_arn!r}")
    return parts[3], parts[4], parts[5].removeprefix("stream/")


def lambda_record(
    record: KinesisRecord, *, shard_id: str, stream_arn: str, invoke_identity_arn: str
) -> dict[str, Any]:
    """One GetRecords record as a record of Lambda's Kinesis event."""
    sequence_number = record["SequenceNumber"]
    return {
        "kinesis": {
            "kinesisSchemaVersion": "1.0",
            "partitionKey": record["PartitionKey"],
            "sequenceNumber": sequence_number,
            "data": base64.b64encode(record["Data"]).decode("ascii"),
            # Lambda sends epoch seconds with millisecond precision; boto3 parsed it into a datetime.
            "approximateArrivalTimestamp": round(record["ApproximateArrivalTimestamp"].timestamp(), 3),
        },
        "eventSource": "aws:kinesis",
        "eventVersion": "1.0",
        "eventID": f"{shard_id}:{sequence_number}",
        "eventName": "aws:kinesis:record",
        "invokeIdentityArn": invoke_identity_arn,
        "awsRegion": parse_stream_arn(stream_arn)[0],
        "eventSourceARN": stream_arn,
    }


def first_failed_index(response: Any, sequence_numbers: Sequence[str]) -> int | None:
    """Where the next batch starts after a `ReportBatchItemFailures` response: the index of the lowest
    reported record, or None if the whole batch succeeded. Raises InvalidBatchResponse for anything Lambda
    treats as a failure of the whole batch (unknown, empty or missing itemIdentifier, wrong shape)."""
    failed = reported_failures(response, sequence_numbers)
    if not failed:
        return None
    # Records of a batch come from one shard in sequence order, so the lowest number is the earliest index.
    return min(index for index, number in enumerate(sequence_numbers) if number in failed)


# --- per-shard state ---------------------------------------------------------------------------------------
@dataclass
class _Shard:
    shard_id: str
    key: CheckpointKey
    position: str | None  # the last sequence number read from the shard (starts at the checkpoint)
    iterator: str | None = None  # None: get a new one after `position` (or at the starting position)
    buffer: list[KinesisRecord] = field(default_factory=list)  # read, not yet processed successfully
    buffered_since: float = 0.0  # when the buffer last went from empty to non-empty (batching window)
    closed: bool = False
    ready_at: float = 0.0  # monotonic time the shard next wants attention (poll interval, retry, backoff)
    failing_sequence_number: str | None = None  # the record the current run of failed invocations starts at
    failures: int = 0
    in_trouble: bool = False  # the last read failed (the stream is unreachable, not empty)
    caught_up: bool = False  # the last read found nothing new and nothing waits in the buffer
    io_backoff: Backoff = field(default_factory=Backoff)

    @property
    def exhausted(self) -> bool:
        return self.closed and not self.buffer


# --- the poller --------------------------------------------------------------------------------------------
class KinesisEventSourcePoller:
    """Delivers one stream's records to one handler the way a Kinesis event source mapping with
    `FunctionResponseTypes: [ReportBatchItemFailures]` does: one worker per shard, in order, checkpointed."""

    def __init__(
        self,
        handler: Handler,
        stream_name: str,
        kinesis_client: Any,
        *,
        batch_size: int = 100,
        starting_position: str = "TRIM_HORIZON",
        function_name: str,
        checkpoints: Checkpoints,
        maximum_retry_attempts: int = -1,
        on_failure: OnFailure | None = None,
        timeout_seconds: float = 60,
        memory_mb: int = DEFAULT_MEMORY_MB,
        poll_interval_seconds: float = 0.2,
        max_batching_window_seconds: float = 0,
        retry_delay_seconds: float = 0.5,
        invoke_identity_arn: str | None = None,
        shard_share: tuple[int, int] = (0, 1),
        logger: logging.Logger | None = None,
    ) -> None:
        share_of_shards(["shardId-0"], shard_share)  # validates it
        _validate(
            batch_size, starting_position, maximum_retry_attempts, timeout_seconds, poll_interval_seconds
        )
        if not 0 <= max_batching_window_seconds <= 300:
            raise ValueError("max_batching_window_seconds must be between 0 and 300")
        self._handler = handler
        self.stream_name = stream_name
        self._kinesis = kinesis_client
        self.batch_size = batch_size
        self.starting_position = starting_position
        self.function_name = function_name
        self._checkpoints = checkpoints
        self.maximum_retry_attempts = maximum_retry_attempts
        self._on_failure = on_failure
        self.timeout_seconds = timeout_seconds
        self.memory_mb = memory_mb
        self.poll_interval_seconds = poll_interval_seconds
        self.max_batching_window_seconds = max_batching_window_seconds
        self.retry_delay_seconds = retry_delay_seconds
        self._invoke_identity_arn = invoke_identity_arn
        self.shard_share = shard_share
        self._log = logger or logging.getLogger(__name__)
        self._stream_arn: str | None = None
        self._shards: list[_Shard] | None = None
        self._discovery_lock = threading.Lock()
        self._stopping = threading.Event()
        self._supervisor: threading.Thread | None = None

    # --- lifecycle -----------------------------------------------------------------------------------------
    def start(self) -> None:
        """List the shards (retrying until the stream is reachable), then run one daemon worker per shard."""
        if self._running():
            raise RuntimeError(f"the poller of {self.function_name} is already running")
        self._stopping.clear()
        self._supervisor = threading.Thread(
            target=self._supervise, name=f"kinesis-poller-{self.function_name}", daemon=True
        )
        self._supervisor.start()

    def stop(self, timeout: float = 30.0) -> bool:
        """Stop reading; an invocation in progress ends and is checkpointed. True if all workers ended.

        Records read but not yet invoked stay with this poller; a new one reads them again after the
        checkpoint."""
        self._stopping.set()
        if self._supervisor is None:
            return True
        self._supervisor.join(timeout)
        if self._supervisor.is_alive():
            self._log.warning("workers of %s still busy after %.0f s", self.function_name, timeout)
            return False
        self._supervisor = None
        return True

    def run_until_idle(self, idle_seconds: float = 1.0, timeout: float = 60) -> int:
        """Poll every shard in the calling thread until none yields a record for `idle_seconds`.

        Shards take turns (one batch each), so each shard's order holds but invocations never overlap.
        Returns the number of records delivered (a redelivered record counts each time). Raises TimeoutError
        if the stream is still busy (a batch being retried, or unreachable) after `timeout` seconds."""
        return self._run_here(timeout, idle_seconds)

    def run_until_caught_up(self, timeout: float = 60) -> int:
        """Poll every shard in the calling thread until each has read to the end of its shard (a GetRecords
        with no record and nothing behind latest) and delivered everything it read; no idle period. A
        batch being retried keeps its shard from being caught up. Returns the records delivered."""
        return self._run_here(timeout, None)

    def _run_here(self, timeout: float, idle_seconds: float | None) -> int:
        if self._running():
            raise RuntimeError(f"the poller of {self.function_name} is running in the background")
        deadline = time.monotonic() + timeout
        last_activity = time.monotonic()
        backoff = Backoff()
        instances: dict[str, Instance] = {}
        delivered = 0
        asked = False  # a shard caught up in an earlier run is asked afresh, at once, once per run
        while True:
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"{self.stream_name} did not go idle within {timeout} s ({delivered} records delivered)"
                )
            try:
                shards = self._discover()
            except Exception as error:
                delay = backoff.next_delay()
                self._log_read_error("listing the shards", error, delay)
                time.sleep(delay)
                last_activity = time.monotonic()  # an unreachable stream is not an empty one
                continue
            if idle_seconds is None and not asked:
                for shard in shards:
                    if shard.caught_up:  # waiting out its poll interval, not a retry's backoff
                        shard.caught_up, shard.ready_at = False, time.monotonic()
                asked = True
            live = [shard for shard in shards if not shard.exhausted]
            if not live:
                return delivered  # every shard is closed and processed: nothing can arrive any more
            if idle_seconds is None:
                live = [shard for shard in live if not shard.caught_up]
                if not live:
                    return delivered
            count, busy = self._poll_round(live, instances)
            delivered += count
            next_ready = min(shard.ready_at for shard in live) - time.monotonic()
            if idle_seconds is None:
                if not all(shard.caught_up for shard in live):
                    time.sleep(min(max(next_ready, 0.0), 0.05))  # a retry's backoff or a batching window
                continue
            time.sleep(min(max(next_ready, 0.005), idle_seconds))
            if count or busy:
                last_activity = time.monotonic()
            elif time.monotonic() - last_activity >= idle_seconds:
                return delivered

    def _poll_round(self, shards: list[_Shard], instances: dict[str, Instance]) -> tuple[int, bool]:
        """One turn for every shard that is due. Returns the records delivered and whether any shard is
        busy without delivering (a batch waiting for its retry or window, or an unreachable shard)."""
        delivered = 0
        for shard in shards:
            if shard.ready_at <= time.monotonic():
                instance = instances.setdefault(shard.shard_id, Instance(self.function_name))
                delivered += self._poll_once(shard, instance)
        return delivered, any(shard.buffer or shard.in_trouble for shard in shards)

    # --- introspection -------------------------------------------------------------------------------------
    @property
    def stream_arn(self) -> str:
        self._discover()
        assert self._stream_arn is not None
        return self._stream_arn

    @property
    def shard_ids(self) -> list[str]:
        return [shard.shard_id for shard in self._discover()]

    def checkpoint(self, shard_id: str) -> str | None:
        """The last sequence number of `shard_id` the mapping has checkpointed (None: nothing yet)."""
        for shard in self._discover():
            if shard.shard_id == shard_id:
                return self._checkpoints.get(shard.key)
        raise KeyError(shard_id)

    # --- shards --------------------------------------------------------------------------------------------
    def _running(self) -> bool:
        return self._supervisor is not None and self._supervisor.is_alive()

    def _discover(self) -> list[_Shard]:
        """The stream's shards, listed once (lazily: the emulator may not be up when the poller is built).

        Resharding is not followed: shards created later by a split or merge are not read, and parent and
        child shards that already exist are read side by side rather than parents first. Only this poller's
        `shard_share` of them is kept (all of them by default)."""
        with self._discovery_lock:
            if self._shards is None:
                summary = self._kinesis.describe_stream_summary(StreamName=self.stream_name)
                description = summary["StreamDescriptionSummary"]
                created = description["StreamCreationTimestamp"].astimezone(UTC)
                stream = f"{description['StreamARN']}@{created.isoformat(timespec='milliseconds')}"
                shards = []
                for shard_id in share_of_shards(self._list_shard_ids(), self.shard_share):
                    key = CheckpointKey(self.function_name, stream, shard_id)
                    shards.append(_Shard(shard_id, key, position=self._checkpoints.get(key)))
                self._stream_arn = description["StreamARN"]
                self._shards = shards
            return self._shards

    def _list_shard_ids(self) -> list[str]:
        shard_ids: list[str] = []
        request: dict[str, Any] = {"StreamName": self.stream_name}
        while True:
            response = self._kinesis.list_shards(**request)
            shard_ids.extend(shard["ShardId"] for shard in response["Shards"])
            if not response.get("NextToken"):
                return shard_ids
            request = {"NextToken": response["NextToken"]}  # ListShards refuses StreamName with a token

    def _supervise(self) -> None:
        backoff = Backoff()
        while not self._stopping.is_set():
            try:
                shards = self._discover()
                break
            except Exception as error:
                delay = backoff.next_delay()
                self._log_read_error("listing the shards", error, delay)
                self._stopping.wait(delay)
        else:
            return
        workers = [
            threading.Thread(
                target=self._shard_main,
                args=(shard,),
                name=f"kinesis-poller-{self.function_name}-{shard.shard_id}",
                daemon=True,
            )
            for shard in shards
        ]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()

    def _shard_main(self, shard: _Shard) -> None:
        instance = Instance(self.function_name)  # one execution environment per shard, reused
        try:
            while not self._stopping.is_set() and not shard.exhausted:
                delay = shard.ready_at - time.monotonic()
                if delay > 0:
                    self._stopping.wait(delay)
                    continue
                self._poll_once(shard, instance)
        except BaseException:
            self._log.critical("the %s worker of %s died", self.function_name, shard.shard_id, exc_info=True)
            raise
        if shard.exhausted:
            self._log.info("%s: %s is closed and fully processed", self.function_name, shard.shard_id)

    # --- one step of one shard -----------------------------------------------------------------------------
    def _poll_once(self, shard: _Shard, instance: Instance) -> int:
        """Top the shard's buffer up, then invoke at most one batch. Returns the records delivered."""
        try:
            delivered = self._advance(shard, instance)
        except Exception as error:
            delay = shard.io_backoff.next_delay()
            shard.in_trouble = True
            shard.ready_at = time.monotonic() + delay
            self._log_read_error(f"polling {shard.shard_id}", error, delay)
            return 0
        shard.io_backoff.reset()
        shard.in_trouble = False
        return delivered

    def _advance(self, shard: _Shard, instance: Instance) -> int:
        caught_up = True
        shard.caught_up = False
        if len(shard.buffer) < self.batch_size and not shard.closed:
            caught_up = self._read(shard)
        now = time.monotonic()
        if not shard.buffer:
            shard.caught_up = caught_up
            shard.ready_at = now + self.poll_interval_seconds if caught_up else now
            return 0
        window_ends = shard.buffered_since + self.max_batching_window_seconds
        if len(shard.buffer) < self.batch_size and not shard.closed and now < window_ends:
            shard.ready_at = min(window_ends, now + self.poll_interval_seconds)  # keep filling the batch
            return 0
        return self._deliver(shard, instance)

    def _read(self, shard: _Shard) -> bool:
        """One GetRecords call into the buffer. True if the shard has nothing more right now."""
        if shard.iterator is None:
            shard.iterator = self._new_iterator(shard)
        try:
            response = self._kinesis.get_records(
                ShardIterator=shard.iterator, Limit=self.batch_size - len(shard.buffer)
            )
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") != "ExpiredIteratorException":
                raise
            # Iterators live five minutes; a fresh one continues after the last record read.
            self._log.info("%s: the iterator of %s expired; renewing it", self.function_name, shard.shard_id)
            shard.iterator = None
            return False
        records = response.get("Records", [])
        if records:
            if not shard.buffer:
                shard.buffered_since = time.monotonic()
            shard.buffer.extend(records)
            shard.position = records[-1]["SequenceNumber"]
        shard.iterator = response.get("NextShardIterator")
        if shard.iterator is None:
            shard.closed = True  # a split or merge closed the shard: nothing more will arrive
        # An empty response while MillisBehindLatest > 0 only means a gap in the shard: read on at once.
        return not records and response.get("MillisBehindLatest", 0) == 0

    def _new_iterator(self, shard: _Shard) -> str:
        request: dict[str, Any] = {"StreamName": self.stream_name, "ShardId": shard.shard_id}
        if shard.position is not None:
            request.update(ShardIteratorType="AFTER_SEQUENCE_NUMBER", StartingSequenceNumber=shard.position)
        else:
            # Resolved once per poller: LATEST then stays pinned while this poller keeps the shard state.
            request.update(ShardIteratorType=self.starting_position)
        return self._kinesis.get_shard_iterator(**request)["ShardIterator"]

    # --- invoke and checkpoint -----------------------------------------------------------------------------
    def _deliver(self, shard: _Shard, instance: Instance) -> int:
        batch = shard.buffer[: self.batch_size]
        records = [self._lambda_record(shard, record) for record in batch]
        failed_at = self._invoke(records, instance)
        now = time.monotonic()
        if failed_at is None:
            self._commit(shard, len(batch))
            shard.failing_sequence_number, shard.failures = None, 0
            shard.ready_at = now
            return len(batch)
        if failed_at:
            self._commit(shard, failed_at)  # the records before the lowest failure are done
        first = batch[failed_at]["SequenceNumber"]
        if first == shard.failing_sequence_number:
            shard.failures += 1
        else:
            shard.failing_sequence_number, shard.failures = first, 1
        if 0 <= self.maximum_retry_attempts < shard.failures:
            self._give_up(shard, records[failed_at:])
            shard.ready_at = now
        else:
            delay = self.retry_delay_seconds * 2 ** (shard.failures - 1)
            shard.ready_at = now + min(delay, _RETRY_DELAY_MAX_SECONDS)
        return len(batch)

    def _commit(self, shard: _Shard, count: int) -> None:
        """Checkpoint the first `count` buffered records, then drop them (in that order: a failed write
        leaves them buffered, so they are delivered again — at least once, as on AWS)."""
        self._checkpoints.put(shard.key, shard.buffer[count - 1]["SequenceNumber"])
        del shard.buffer[:count]

    def _give_up(self, shard: _Shard, records: list[dict[str, Any]]) -> None:
        self._log.error(
            "%s: %d record(s) of %s from %s skipped after %d retries",
            self.function_name,
            len(records),
            shard.shard_id,
            shard.failing_sequence_number,
            self.maximum_retry_attempts,
        )
        if self._on_failure is not None:
            try:
                self._on_failure(records)
            except Exception:
                # The on-failure destination is best effort here; the shard must not stay blocked on it.
                self._log.exception("%s: the on_failure callback failed", self.function_name)
        self._commit(shard, len(records))
        shard.failing_sequence_number, shard.failures = None, 0

    def _lambda_record(self, shard: _Shard, record: KinesisRecord) -> dict[str, Any]:
        return lambda_record(
            record,
            shard_id=shard.shard_id,
            stream_arn=self.stream_arn,
            invoke_identity_arn=self._identity_arn(),
        )

    def _identity_arn(self) -> str:
        if self._invoke_identity_arn is None:
            account = parse_stream_arn(self.stream_arn)[1]
            self._invoke_identity_arn = f"arn:aws:iam::{account}:role/{self.function_name}-role"
        return self._invoke_identity_arn

    def _context(self, instance: Instance) -> LambdaContext:
        region, account, _ = parse_stream_arn(self.stream_arn)
        return LambdaContext(
            function_name=self.function_name,
            invoked_function_arn=f"arn:aws:lambda:{region}:{account}:function:{self.function_name}",
            memory_limit_in_mb=self.memory_mb,
            log_group_name=f"/aws/lambda/{self.function_name}",
            log_stream_name=instance.log_stream_name,
            timeout_seconds=self.timeout_seconds,
        )

    def _invoke(self, records: list[dict[str, Any]], instance: Instance) -> int | None:
        """Call the handler; return the index the next batch starts at (0: all of it), None on success."""
        sequence_numbers = [record["kinesis"]["sequenceNumber"] for record in records]
        context = self._context(instance)
        started = time.monotonic()
        try:
            response = self._handler({"Records": records}, context)
        except (Exception, SystemExit):
            self._log.exception(
                "%s failed (request %s); the batch of %d will be retried",
                self.function_name,
                context.aws_request_id,
                len(records),
            )
            return 0
        elapsed = time.monotonic() - started
        if elapsed > self.timeout_seconds:
            # Lambda would have killed the invocation at its timeout: nothing of the batch counts as done.
            self._log.error(
                "%s ran %.1f s, past its %s s timeout (request %s); the batch of %d will be retried",
                self.function_name,
                elapsed,
                self.timeout_seconds,
                context.aws_request_id,
                len(records),
            )
            return 0
        try:
            return first_failed_index(response, sequence_numbers)
        except InvalidBatchResponse as error:
            self._log.error(
                "%s returned an invalid batch response (%s); the batch of %d will be retried",
                self.function_name,
                error,
                len(records),
            )
            return 0

    def _log_read_error(self, what: str, error: Exception, delay: float) -> None:
        if isinstance(error, BotoCoreError | ClientError):
            self._log.warning("%s of %s failed (%s); retry in %.1f s", what, self.stream_name, error, delay)
        else:
            self._log.error("%s of %s failed; retry in %.1f s", what, self.stream_name, delay, exc_info=error)


def share_of_shards(shard_ids: Iterable[str], share: tuple[int, int]) -> list[str]:
    """The shards process `index` of `count` reads: every count-th of the shard ids in sorted order, starting
    at the index-th. The shares of indexes 0..count-1 are disjoint and together hold every shard, so with one
    process per index each shard has one reader and none has none; the same index gets the same shards
    again after a restart (as long as the stream keeps its shards), and resumes at their checkpoints."""
    index, count = share
    if count < 1 or not 0 <= index < count:
        raise ValueError(f"shard_share must be (index, count) with 0 <= index < count, got {share!r}")
    return [shard_id for position, shard_id in enumerate(sorted(shard_ids)) if position % count == index]


def _validate(
    batch_size: int,
    starting_position: str,
    maximum_retry_attempts: int,
    timeout_seconds: float,
    poll_interval_seconds: float,
) -> None:
    if not 1 <= batch_size <= LAMBDA_MAX_BATCH:
        raise ValueError(f"batch_size must be between 1 and {LAMBDA_MAX_BATCH}")
    if starting_position not in STARTING_POSITIONS:
        raise ValueError(f"starting_position must be one of {', '.join(STARTING_POSITIONS)}")
    if not -1 <= maximum_retry_attempts <= MAX_RETRY_ATTEMPTS:
        raise ValueError(f"maximum_retry_attempts must be -1 (infinite) or 0 to {MAX_RETRY_ATTEMPTS}")
    if timeout_seconds <= 0:
        raise ValueError("timeout_seconds must be positive")
    if poll_interval_seconds <= 0:
        raise ValueError("poll_interval_seconds must be positive")


# --- wiring a Chalice app ----------------------------------------------------------------------------------
def pollers_for_app(
    app_module: ModuleType,
    kinesis_client: Any,
    *,
    function_name_prefix: str,
    checkpoints: Checkpoints,
    **kwargs: Any,
) -> list[KinesisEventSourcePoller]:
    """One poller per `@app.on_kinesis_record` of `app_module.app`, configured from the decorator's arguments.

    Function names follow Chalice's deployed names, `<prefix>-<handler name>`. Keyword arguments go to every
    poller and win over the decorator's settings (e.g. `starting_position="TRIM_HORIZON"` in tests)."""
    pollers = []
    for config in _kinesis_configs(app_module.app.event_sources):
        settings: dict[str, Any] = {
            "batch_size": config.batch_size,
            "starting_position": config.starting_position,
            "max_batching_window_seconds": config.maximum_batching_window_in_seconds or 0,
        }
        settings.update(kwargs)
        pollers.append(
            KinesisEventSourcePoller(
                handler_for(app_module, config),  # typed for SQS, but reads only handler_string
                config.stream,
                kinesis_client,
                function_name=f"{function_name_prefix}-{config.name}",
                checkpoints=checkpoints,
                **settings,
            )
        )
    return pollers


def _kinesis_configs(event_sources: Iterable[Any]) -> list[KinesisEventConfig]:
    return [source for source in event_sources if isinstance(source, KinesisEventConfig)]
