"""The PutRecords batcher (chalicelib/adapters/kinesis_batcher.py) against a fake Kinesis client.

Interleavings are forced, never slept into: the fake client can hold a call in flight until the test lets it
go, time is a fake clock that moves only when the flusher thread waits (its linger and its backoff), and the
other threads really wait on the batcher's condition (woken by its notifications)."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable

import pytest

from chalicelib.adapters.kinesis_batcher import (
    PutRecordsBatcher,
    StreamWriteError,
    StreamWriteTimeout,
    Written,
)

REAL_WAIT_CAP = 0.05  # how long a non-flowing wait blocks at most before looking again (no logic rides on it)


class FakeTime:
    """A clock that moves only when a thread marked `flowing` waits (then by the whole timeout, at once);
    other threads wait on the condition for real, woken by its notify."""

    def __init__(self) -> None:
        self.now = 64.0  # a power of two: the linger arithmetic below stays exact
        self.flowing: set[int] = set()
        self.waits: list[float] = []  # timeouts of the flowing waits
        self.hooks: list[Callable[[threading.Condition], None]] = []  # run at the next flowing waits

    def flow(self) -> None:
        self.flowing.add(threading.get_ident())

    def clock(self) -> float:
        return self.now

    def wait(self, cond: threading.Condition, timeout: float) -> None:
        if threading.get_ident() not in self.flowing:
            cond.wait(min(timeout, REAL_WAIT_CAP))
            return
        self.waits.append(timeout)
        if self.hooks:
            self.hooks.pop(0)(cond)  # something happens meanwhile; time does not move
            return
        self.now += timeout


class FakeKinesis:
    """put_records: every record lands on shard-0 with the next sequence number, unless told to fail it
    (per-record ErrorCode) or to raise; `hold()` keeps the next call in flight until `release()`."""

    def __init__(self, time: FakeTime) -> None:
        self.time = time
        self.calls: list[list[str]] = []  # the data of each call's records, in request order
        self.call_times: list[float] = []
        self.fail: dict[str, list[str]] = {}  # data -> error codes for its next attempts
        self.raise_next: Exception | None = None
        self.sequence = 0
        self.stream: list[str] = []  # what is in the stream, in sequence order
        self._hold_next = False
        self._gate = threading.Event()
        self.in_flight = threading.Event()

    def hold(self) -> None:
        self._hold_next = True

    def release(self) -> None:
        self._gate.set()

    def put_records(self, StreamName: str, Records: list[dict]) -> dict:
        data = [record["Data"].decode() for record in Records]
        self.calls.append(data)
        self.call_times.append(self.time.now)
        held, self._hold_next = self._hold_next, False
        if held:
            self.in_flight.set()
            assert self._gate.wait(10), "the test never released the call"
        if self.raise_next is not None:
            error, self.raise_next = self.raise_next, None
            raise error
        answers = []
        for item in data:
            codes = self.fail.get(item)
            if codes:
                code = codes.pop(0)
                answers.append({"ErrorCode": code, "ErrorMessage": f"{code} for {item}"})
                continue
            self.sequence += 1
            self.stream.append(item)
            answers.append({"ShardId": "shard-0", "SequenceNumber": str(self.sequence)})
        failed = sum(1 for answer in answers if "ErrorCode" in answer)
        return {"FailedRecordCount": failed, "Records": answers}


@pytest.fixture()
def time() -> FakeTime:
    return FakeTime()


@pytest.fixture()
def kinesis(time: FakeTime) -> FakeKinesis:
    return FakeKinesis(time)


@pytest.fixture()
def make(time: FakeTime, kinesis: FakeKinesis):
    made: list[PutRecordsBatcher] = []

    def build(**kwargs) -> PutRecordsBatcher:
        options = {"linger_seconds": 0.0, "deadline_seconds": 5.0, **kwargs}
        batcher = PutRecordsBatcher(kinesis, "s", clock=time.clock, wait=time.wait, **options)
        made.append(batcher)
        return batcher

    yield build


def in_thread(target: Callable[[], object]) -> tuple[threading.Thread, list]:
    outcome: list = []

    def run() -> None:
        try:
            outcome.append(target())
        except Exception as exc:
            outcome.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, outcome


def wait_until_queued(batcher: PutRecordsBatcher, count: int) -> None:
    """Block (on the batcher's own condition) until `count` records wait in its queue."""
    state = batcher._state
    with state.cond:
        assert state.cond.wait_for(lambda: len(state.queue) == count, timeout=10), len(state.queue)


def test_a_put_returns_its_records_place_in_the_stream(make, kinesis) -> None:
    batcher = make()
    assert batcher.put("a", "k") == Written("shard-0", "1")
    assert batcher.put("b", "k") == Written("shard-0", "2")
    assert kinesis.calls == [["a"], ["b"]]


def test_records_submitted_while_a_call_is_in_flight_go_together_in_the_next_call(make, kinesis) -> None:
    batcher = make()  # linger 0: the batching comes from the call in flight alone
    kinesis.hold()
    first, first_outcome = in_thread(lambda: batcher.put("a", "k"))
    assert kinesis.in_flight.wait(10)
    others = [in_thread(lambda item=item: batcher.put(item, "k")) for item in "bcdef"]
    wait_until_queued(batcher, 5)
    assert kinesis.calls == [["a"]], "nothing else is sent while a call is in flight"
    kinesis.release()
    for thread, _ in [(first, first_outcome), *others]:
        thread.join(10)
    assert kinesis.calls[0] == ["a"] and sorted(kinesis.calls[1]) == list("bcdef")
    assert len(kinesis.calls) == 2
    assert first_outcome == [Written("shard-0", "1")]
    assert sorted(outcome[0].sequence_number for _, outcome in others) == ["2", "3", "4", "5", "6"]


def test_a_put_that_returned_is_ahead_of_every_later_put(make, kinesis) -> None:
    batcher = make()
    for item in "abc":
        batcher.put(item, "k")
    assert kinesis.stream == ["a", "b", "c"] and kinesis.calls == [["a"], ["b"], ["c"]]


def test_a_call_holds_at_most_500_records_and_5_mib(make, kinesis) -> None:
    batcher = make()
    batcher.put_many([(str(i), "k") for i in range(1001)])
    assert [len(call) for call in kinesis.calls] == [500, 500, 1]
    assert kinesis.stream == [str(i) for i in range(1001)]

    kinesis.calls.clear()
    big = "x" * (1024 * 1024 - 10)  # 1 MiB with its key: five fit one call, the sixth does not
    batcher.put_many([(big + str(i), "key") for i in range(7)])
    assert [len(call) for call in kinesis.calls] == [5, 2]
    with pytest.raises(StreamWriteError, match="exceeds"):
        batcher.put("y" * (1024 * 1024), "k")


def test_the_first_record_waits_at_most_the_linger_and_takes_what_arrives_meanwhile(
    make, kinesis, time
) -> None:
    batcher = make(linger_seconds=0.0078125)  # 2 ** -7 s: exact in binary
    time.flow()  # this thread is the flusher: its waits move the clock
    started = time.now
    arrived: list = []

    def second_record_arrives(cond: threading.Condition) -> None:
        thread, outcome = in_thread(lambda: batcher.put("b", "k"))
        arrived.append((thread, outcome))
        assert cond.wait_for(lambda: len(batcher._state.queue) == 2, timeout=10)

    time.hooks.append(second_record_arrives)
    assert batcher.put("a", "k") == Written("shard-0", "1")
    thread, outcome = arrived[0]
    thread.join(10)
    assert kinesis.calls == [["a", "b"]], "b arrived within a's linger: one call"
    assert kinesis.call_times == [started + 0.0078125], "sent when the linger ran out, not later"
    # The flusher waits for what is left of the first record's linger (all of it: b came, time stood still).
    assert time.waits == [0.0078125, 0.0078125]
    assert outcome == [Written("shard-0", "2")]


def test_a_full_batch_or_a_caller_with_its_batch_in_hand_does_not_linger(make, kinesis, time) -> None:
    batcher = make(linger_seconds=10.0, max_records=3)
    time.flow()
    batcher.put_many([("a", "k"), ("b", "k")])
    assert time.waits == [] and kinesis.calls == [["a", "b"]]


def test_failed_records_are_retried_first_in_order_before_anything_submitted_later(
    make, kinesis, time
) -> None:
    batcher = make()
    time.flow()
    kinesis.fail = {"b": ["ProvisionedThroughputExceededException"], "d": ["InternalFailure"]}
    later: list = []

    def another_record_is_submitted_during_the_backoff(cond: threading.Condition) -> None:
        later.append(in_thread(lambda: batcher.put("f", "k")))
        assert cond.wait_for(lambda: len(batcher._state.queue) == 1, timeout=10)

    time.hooks.append(another_record_is_submitted_during_the_backoff)
    written = batcher.put_many([(item, "k") for item in "abcde"])
    thread, outcome = later[0]
    thread.join(10)
    assert kinesis.calls == [list("abcde"), ["b", "d"], ["f"]]
    assert kinesis.stream == ["a", "c", "e", "b", "d", "f"]
    assert [w.sequence_number for w in written] == ["1", "4", "2", "5", "3"]
    assert outcome == [Written("shard-0", "6")]
    assert len(time.waits) == 2 and 0 < time.waits[-1] <= 0.05, "a backoff before the retry"


def test_a_record_not_written_by_its_deadline_fails_and_is_not_sent_again(make, kinesis, time) -> None:
    batcher = make(deadline_seconds=2.0)
    time.flow()
    kinesis.fail = {"a": ["ProvisionedThroughputExceededException"] * 1000}
    with pytest.raises(StreamWriteTimeout, match="ProvisionedThroughputExceeded"):
        batcher.put("a", "k")
    attempts = len(kinesis.calls)
    assert 3 <= attempts < 20, "retried with a growing backoff until the deadline"
    assert time.now <= 64.0 + 2.0, "no wait beyond the deadline"
    assert batcher.put("b", "k").sequence_number == "1"
    assert kinesis.calls[attempts:] == [["b"]], "the expired record is not sent again"


def test_a_call_that_fails_fails_every_record_in_it(make, kinesis) -> None:
    batcher = make()
    kinesis.raise_next = ConnectionError("endpoint went away")
    with pytest.raises(StreamWriteError, match="endpoint went away"):
        batcher.put_many([("a", "k"), ("b", "k")])
    assert batcher.put("c", "k").sequence_number == "1"


def test_close_sends_what_is_queued_then_refuses_new_records(make, kinesis) -> None:
    batcher = make(linger_seconds=3600.0)  # a linger nobody would wait out
    thread, outcome = in_thread(lambda: batcher.put("a", "k"))
    wait_until_queued(batcher, 1)
    batcher.close()
    assert kinesis.stream == ["a"], "closing flushed the lingering record"
    thread.join(10)
    assert outcome == [Written("shard-0", "1")]
    with pytest.raises(StreamWriteError, match="closed"):
        batcher.put("b", "k")


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork only")
def test_a_forked_child_starts_with_a_batcher_of_its_own(make, kinesis) -> None:
    batcher = make()
    kinesis.hold()
    thread, _ = in_thread(lambda: batcher.put("parent", "k"))
    assert kinesis.in_flight.wait(10)
    state = batcher._state
    with state.cond:  # held at the fork, and a call of the parent's in flight
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: neither the held lock nor the parent's flusher may block it
            try:
                kinesis.calls.clear()
                written = batcher.put("child", "k")
                os.write(write, f"{written.sequence_number} {kinesis.calls}".encode())
            finally:
                os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        answer = pipe.read()
    os.waitpid(pid, 0)
    kinesis.release()
    thread.join(10)
    assert answer == "1 [['child']]"


def test_an_answer_that_cannot_be_read_fails_the_records_it_does_not_vouch_for(make, kinesis) -> None:
    batcher = make()
    real = kinesis.put_records

    def short_answer(**kwargs) -> dict:
        answer = real(**kwargs)
        return {**answer, "Records": answer["Records"][:1]}  # one answer for two records

    kinesis.put_records = short_answer
    with pytest.raises(StreamWriteError, match="PutRecords failed"):
        batcher.put_many([("a", "k"), ("b", "k")])
    kinesis.put_records = real
    assert batcher.put("c", "k").sequence_number == "3"
