"""Kinesis PutRecords batching: many callers' records in one call, each caller answered only once its own
record is in the stream.

Why: a stream emulator (and, less so, Kinesis itself) pays per call, not per record: moto and LocalStack take
~33 single PutRecord/s but ~520 records/s in PutRecords of 100. A caller submits one record (or a few) and
blocks until the PutRecords response says its entry succeeded -> (shard id, sequence number); an entry that
failed (per-record ErrorCode: ProvisionedThroughputExceeded, InternalFailure) is retried with backoff, and
nothing submitted after it is sent until it is in the stream; a record not in the stream by its deadline
raises StreamWriteTimeout (the caller promises nothing: stream_state answers 503).

Group commit, no thread of its own: the first caller to find no call in flight becomes the *flusher* (one
per stream and process at a time); it lingers up to `linger` after the batch's first record for more (or until
500 records / 5 MiB are queued, or someone asks for a flush), sends them in one call, hands the outcome to
each caller and steps down; a caller still waiting takes over for whatever queued meanwhile. So:

* one call in flight per stream: a record submitted after another's put returned goes in a later call
  (happens-before order per partition key, as with sequential PutRecord). Records of one call were submitted
  concurrently; their order in the stream is not promised (AWS: PutRecords does not keep order; a failed
  entry is retried after its neighbours succeeded). Whoever needs an order among records it has in hand puts
  them in successive calls (put_many, one group after the other).
* linger 0 still batches: whatever queued while the previous call was in flight goes in the next one.
* fork-safe: no thread to inherit; a forked child starts with an empty batcher (os.register_at_fork).
* shutdown: every queued record has a caller blocked on it, who flushes it; close() (atexit) flushes what is
  queued and refuses new records.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import random
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

log = logging.getLogger(__name__)

MAX_RECORDS = 500  # PutRecords: records per call
MAX_BYTES = 5 * 1024 * 1024  # PutRecords: data + partition keys per call
MAX_RECORD_BYTES = 1024 * 1024  # one record's data + partition key
BACKOFF_BASE_SECONDS = 0.05
BACKOFF_MAX_SECONDS = 1.0
IN_FLIGHT_POLL_SECONDS = 1.0  # a caller whose record is in flight is woken by the call's end; this is a net

Waiter = Callable[[threading.Condition, float], object]  # wait on the condition at most this long


class Written(NamedTuple):
    shard_id: str
    sequence_number: str


class StreamWriteError(Exception):
    """The record may not be in the stream: nothing may be promised on it."""


class StreamWriteTimeout(StreamWriteError):
    """The record was not in the stream by its deadline (its last error attached)."""


@dataclass(eq=False)
class _Entry:
    data: bytes
    partition_key: str
    submitted: float
    deadline: float
    size: int = 0
    attempts: int = 0
    result: Written | None = None
    error: BaseException | None = None
    last_failure: str = ""
    in_flight: bool = False

    @property
    def done(self) -> bool:
        return self.result is not None or self.error is not None


@dataclass
class _State:
    """Everything a forked child must not inherit (a lock another thread held at the fork)."""

    cond: threading.Condition = field(default_factory=threading.Condition)
    queue: deque[_Entry] = field(default_factory=deque)  # submitted, not sent yet, in submission order
    retry: list[_Entry] = field(default_factory=list)  # failed in the last call: sent before the queue
    retry_at: float = 0.0
    flushing: bool = False  # a caller is the flusher (lingering, sending or backing off)
    flush_now: bool = False  # skip the rest of the linger (put_many, close)
    closed: bool = False


def _real_wait(cond: threading.Condition, timeout: float) -> object:
    return cond.wait(timeout)


class PutRecordsBatcher:
    """The batching writer of one stream (see the module's docstring). Thread-safe."""

    def __init__(
        self,
        kinesis_client,
        stream_name: str,
        *,
        linger_seconds: float,
        deadline_seconds: float,
        clock: Callable[[], float] = time.monotonic,
        wait: Waiter = _real_wait,
        max_records: int = MAX_RECORDS,
        max_bytes: int = MAX_BYTES,
        backoff_base_seconds: float = BACKOFF_BASE_SECONDS,
        backoff_max_seconds: float = BACKOFF_MAX_SECONDS,
    ) -> None:
        self._kinesis = kinesis_client
        self.stream_name = stream_name
        self.linger = max(linger_seconds, 0.0)
        self.deadline = deadline_seconds
        self._clock = clock
        self._wait = wait
        self._max_records = max_records
        self._max_bytes = max_bytes
        self._backoff_base = backoff_base_seconds
        self._backoff_max = backoff_max_seconds
        self._state = _State()
        self.calls = 0  # PutRecords calls made (metrics, tests)
        _live.add(self)

    # --- callers ---------------------------------------------------------------------------------------
    def put(self, data: str | bytes, partition_key: str) -> Written:
        """Append one record; returns once it is in the stream. Raises StreamWriteError if it may not be."""
        return self.put_many([(data, partition_key)])[0]

    def put_many(self, records: Sequence[tuple[str | bytes, str]]) -> list[Written]:
        """Append records submitted together (no order among them is promised; put groups one after the
        other to order them); returns once all are in the stream, raises if any may not be."""
        if not records:
            return []
        state = self._state
        now = self._clock()
        entries = [self._entry(data, key, now) for data, key in records]
        with state.cond:
            if state.closed:
                raise StreamWriteError(f"stream {self.stream_name}: the writer is closed")
            state.queue.extend(entries)
            if len(entries) > 1:
                state.flush_now = True  # the caller has its whole batch in hand: no linger
            state.cond.notify_all()
            self._await(state, entries)
        failed = next((entry.error for entry in entries if entry.error is not None), None)
        if failed is not None:
            raise failed
        return [entry.result for entry in entries]  # type: ignore[misc]

    def close(self) -> None:
        """Send what is queued, then refuse new records (process exit)."""
        state = self._state
        with state.cond:
            state.flush_now = True
            state.cond.notify_all()
            pending = list(state.retry) + list(state.queue)
            if pending:
                self._await(state, pending)
            state.closed = True

    # --- the flusher -----------------------------------------------------------------------------------
    def _await(self, state: _State, entries: list[_Entry]) -> None:
        """Called with the lock held: be the flusher when there is none, else wait for ours to be done."""
        while not all(entry.done for entry in entries):
            now = self._clock()
            for entry in entries:
                if not entry.done and not entry.in_flight and now >= entry.deadline:
                    self._expire(state, entry)
            if all(entry.done for entry in entries):
                break
            if not state.flushing:
                state.flushing = True
                try:
                    self._flush_once(state)
                finally:
                    state.flushing = False
                    state.cond.notify_all()
                continue
            # Until the soonest deadline of ours still queued; one in flight is answered by the call itself
            # (bounded by the client's timeouts).
            waiting = [entry.deadline for entry in entries if not entry.done and not entry.in_flight]
            self._wait(state.cond, max(min(waiting) - now, 0.001) if waiting else IN_FLIGHT_POLL_SECONDS)

    def _expire(self, state: _State, entry: _Entry) -> None:
        if entry in state.retry:
            state.retry.remove(entry)
        else:
            with contextlib.suppress(ValueError):
                state.queue.remove(entry)
        detail = f" (last error: {entry.last_failure})" if entry.last_failure else ""
        entry.error = StreamWriteTimeout(
            f"stream {self.stream_name}: record not written within {self.deadline:g} s{detail}"
        )

    def _flush_once(self, state: _State) -> None:
        """One call: the failed records of the last call (after their backoff), else a batch of the queue
        (after the linger). Called with the lock held as the flusher; the lock is released for the call."""
        batch = self._retry_batch(state) if state.retry else self._queued_batch(state)
        if not batch:
            return
        for entry in batch:
            entry.in_flight = True
        state.cond.release()
        try:
            outcome = self._send(batch)
        finally:
            state.cond.acquire()
            for entry in batch:
                entry.in_flight = False
        try:
            self._settle(state, batch, outcome)
        except Exception as exc:  # an answer we cannot read: as unknown as a call that failed
            self._settle(state, [entry for entry in batch if not entry.done], exc)

    def _retry_batch(self, state: _State) -> list[_Entry]:
        while state.retry and (now := self._clock()) < state.retry_at:
            soonest = min(entry.deadline for entry in state.retry)
            if soonest <= now:
                break
            self._wait(state.cond, min(state.retry_at, soonest) - now)
        now = self._clock()
        for entry in [entry for entry in state.retry if now >= entry.deadline]:
            self._expire(state, entry)
        batch = self._take(state.retry)
        state.retry = state.retry[len(batch) :]
        return batch

    def _queued_batch(self, state: _State) -> list[_Entry]:
        if not state.queue:
            return []
        while state.queue and not state.flush_now and not self._full(state.queue):
            # At most `linger` after the batch's first record was submitted (it may have queued while the
            # previous call was in flight: then it goes at once).
            remaining = state.queue[0].submitted + self.linger - self._clock()
            if remaining <= 0:
                break
            self._wait(state.cond, remaining)
        state.flush_now = False
        batch = self._take(state.queue)
        for _ in batch:
            state.queue.popleft()
        return batch

    def _full(self, entries: deque[_Entry]) -> bool:
        return len(entries) >= self._max_records or sum(e.size for e in entries) >= self._max_bytes

    def _take(self, entries: Sequence[_Entry]) -> list[_Entry]:
        """The longest prefix of `entries` that fits one call."""
        batch, size = [], 0
        for entry in entries:
            if len(batch) == self._max_records or (batch and size + entry.size > self._max_bytes):
                break
            batch.append(entry)
            size += entry.size
        return batch

    def _send(self, batch: list[_Entry]) -> dict | BaseException:
        self.calls += 1
        try:
            return self._kinesis.put_records(
                StreamName=self.stream_name,
                Records=[{"Data": entry.data, "PartitionKey": entry.partition_key} for entry in batch],
            )
        except Exception as exc:  # the call's outcome is unknown: these records may or may not be in
            return exc

    def _settle(self, state: _State, batch: list[_Entry], outcome: dict | BaseException) -> None:
        if isinstance(outcome, BaseException):
            for entry in batch:
                entry.error = StreamWriteError(f"stream {self.stream_name}: PutRecords failed: {outcome}")
                entry.error.__cause__ = outcome
            return
        failed = []
        for entry, answer in zip(batch, outcome["Records"], strict=True):
            if answer.get("ErrorCode"):
                entry.attempts += 1
                entry.last_failure = f"{answer['ErrorCode']}: {answer.get('ErrorMessage', '')}"
                failed.append(entry)
            else:
                entry.result = Written(answer["ShardId"], answer["SequenceNumber"])
        if failed:
            # Before anything else is sent, in the order they were submitted.
            state.retry = failed + state.retry
            attempts = max(entry.attempts for entry in failed)
            backoff = min(self._backoff_max, self._backoff_base * 2 ** (attempts - 1))
            state.retry_at = self._clock() + random.uniform(backoff / 2, backoff)
            log.warning(
                "stream %s: %d of %d records not written (%s), retried in %.0f ms",
                self.stream_name,
                len(failed),
                len(batch),
                failed[0].last_failure,
                (state.retry_at - self._clock()) * 1000,
            )

    def _entry(self, data: str | bytes, partition_key: str, now: float) -> _Entry:
        payload = data.encode() if isinstance(data, str) else data
        size = len(payload) + len(partition_key.encode())
        if size > MAX_RECORD_BYTES:
            raise StreamWriteError(f"a record of {size} bytes exceeds Kinesis' 1 MiB")
        return _Entry(payload, partition_key, now, now + self.deadline, size)

    def _after_fork(self) -> None:
        # The parent's queue belongs to the parent's callers; its lock may have been held at the fork.
        self._state = _State()


_live: weakref.WeakSet[PutRecordsBatcher] = weakref.WeakSet()


def _reset_after_fork() -> None:
    for batcher in list(_live):
        batcher._after_fork()


def _close_all() -> None:
    for batcher in list(_live):
        try:
            batcher.close()
        except Exception:  # exiting: say so, never hang or raise
            log.exception("stream %s: records queued at exit were not all written", batcher.stream_name)


os.register_at_fork(after_in_child=_reset_after_fork)
atexit.register(_close_all)
