"""Chaos (issue 13, "a 202 is a promise"): each fault hits all five strategies at once, with bookings flowing
before, during and after it, on a MariaDB and a Redis of the tests' own (tests/faults/conftest.py):

    MySQL refuses writes for 40 s   FLUSH TABLES WITH READ LOCK, held by another session
    a performance's keys deleted    every Redis key of each performance, mid-run
    FLUSHALL                        everything Redis holds, mid-run
    Redis hung                      CLIENT PAUSE ALL: every command waits, the clients time out
    the worker killed mid-batch     SIGKILL while it holds received messages (the consumers are a process)

A sampler reads MySQL and Redis *during* the run, four times a second: no seat is ever in two bookings whose
status is PENDING or CONFIRMED (MySQL's booking_seats; Redis' booking records, where a booking waiting in
line holds nothing). Afterwards, per strategy: no seat was answered 201/202 to two clients by a strategy that
promises seats (db_lock, redis_lock, redis_async), none of those bookings ends REJECTED, every accepted
booking is final within the hold deadline plus the retry window, and Redis equals MySQL seat by seat
(harness.audit). The figures are printed (`pytest -s -m fault tests/faults/test_chaos.py`)."""

from __future__ import annotations

import dataclasses
import signal
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pymysql
import pytest
import redis
from redis.cluster import RedisCluster
from redis.exceptions import RedisClusterException

from chalicelib.config import Settings
from tests.faults.harness import (
    ACCEPTED,
    Consumers,
    Fault,
    Load,
    audit,
    log,
    reconcile,
)
from tests.faults.test_fault_scenarios import start_worker
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.fault, pytest.mark.timeout(420)]
STRATEGIES = ("db_lock", "redis_lock", "redis_async", "fifo_partition", "stream_state")
PROMISING = ("db_lock", "redis_lock", "redis_async")  # a 201/202 holds the seats
HANG = 10.0  # no request may take longer (query timeout 2 s, plus settling an uncertain commit)
WRITE_LOCK_SECONDS = 40


@pytest.fixture(scope="module")
def fault_settings(fault_settings: Settings) -> Settings:
    return chaos_settings(fault_settings)


def chaos_settings(fault_settings: Settings) -> Settings:
    """The fault tests' settings (servers of their own, the shipped visibility timeout), with names of the
    chaos tests' own, statements that give up after 2 s (a write-locked MySQL answers nothing), and a retry
    policy that outlasts the 40 s write lock in fewer seconds than the shipped one (10 deliveries, backoff
    1, 2, 4, then 8 s: 55 s), so the drain after it is short."""
    chaos = {
        name: f"{getattr(fault_settings, name)}-chaos".replace(".fifo-chaos", "-chaos.fifo")
        for name in (
            "booking_queue_name",
            "booking_dlq_name",
            "fifo_queue_name",
            "fifo_dlq_name",
            "request_stream_name",
            "changelog_stream_name",
        )
    }
    return fault_settings.replace(
        **chaos,
        redis_key_prefix="chaos",
        db_query_timeout_seconds=2.0,
        max_receive_count=10,
        backoff_base_seconds=1.0,
        backoff_max_seconds=8.0,
    )


# --- the sampler ------------------------------------------------------------------------------------------
class Sampler:
    """Reads MySQL and Redis every `interval` seconds while the run goes on (on connections of its own, never
    the app's), and keeps every seat it ever finds in two PENDING/CONFIRMED bookings."""

    def __init__(self, fault: Fault, performance_ids: list[int], interval: float = 0.25) -> None:
        self._fault = fault
        self._pids = tuple(performance_ids)
        self._interval = interval
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="chaos-sampler", daemon=True)
        self.samples: Counter = Counter()
        self.violations: list[str] = []
        parts = urlsplit(fault.settings.redis_url)
        if fault.settings.redis_cluster:  # every primary's records (tests/faults/test_chaos_cluster.py)
            self._redis = RedisCluster(
                host=parts.hostname, port=parts.port, decode_responses=True, socket_timeout=0.5
            )
        else:
            self._redis = redis.Redis(
                host=parts.hostname, port=parts.port, decode_responses=True, socket_timeout=0.5
            )

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stopping.set()
        self._thread.join(30)
        self._redis.close()

    def _run(self) -> None:
        while not self._stopping.wait(self._interval):
            for name, sample in (("mysql", self._mysql), ("redis", self._redis_records)):
                try:
                    found = sample()
                except (pymysql.err.MySQLError, redis.RedisError, RedisClusterException):
                    self.samples[f"{name} unreadable"] += 1  # the fault itself (Redis paused)
                    continue
                self.samples[name] += 1
                self.violations += [f"{name} at {time.monotonic():.1f}: {v}" for v in found]

    def _mysql(self) -> list[str]:
        rows = self._fault.sql(
            "SELECT bs.performance_id, bs.seat_id, GROUP_CONCAT(b.booking_id) FROM booking_seats bs"
            " JOIN bookings b ON b.booking_id = bs.booking_id"
            " WHERE bs.performance_id IN %s AND b.status IN ('PENDING', 'CONFIRMED')"
            " GROUP BY bs.performance_id, bs.seat_id HAVING COUNT(*) > 1",
            self._pids,
        )
        return [f"performance {pid} seat {seat} held by {bookings}" for pid, seat, bookings in rows]

    def _redis_records(self) -> list[str]:
        """Booking records that hold seats: any CONFIRMED one, and PENDING ones of the strategies whose
        PENDING holds (a booking waiting in line, fifo_partition or stream_state, holds nothing yet)."""
        holders: dict[tuple[int, int], set[str]] = defaultdict(set)
        # Records live in their performance's slot: <prefix>:{p<id>}:booking:<booking id> (redis_seats.py).
        prefix = self._fault.settings.redis_key_prefix
        for key in self._redis.scan_iter(match=f"{prefix}:{{p*}}:booking:*", count=1000):
            record = self._redis.hgetall(key)
            if not record or int(record["performance_id"]) not in self._pids:
                continue
            status, strategy = record["status"], record["strategy"]
            if status == "CONFIRMED" or (status == "PENDING" and strategy in PROMISING):
                for seat in filter(None, record["seat_ids"].split(",")):
                    holders[(int(record["performance_id"]), int(seat))].add(key.rsplit(":", 1)[1])
        return [
            f"performance {p} seat {s} held by {sorted(b)}" for (p, s), b in holders.items() if len(b) > 1
        ]


# --- one run ----------------------------------------------------------------------------------------------
@dataclasses.dataclass
class Run:
    fault: Fault
    performances: dict[str, tuple[int, list[int]]]
    loads: dict[str, Load]
    fault_started: float = 0.0
    fault_ended: float = 0.0


@dataclasses.dataclass
class Result:
    drained: float
    finals: dict[str, dict[str, str]]
    samples: Counter


def performances_of(fault: Fault) -> dict[str, tuple[int, list[int]]]:
    return {strategy: fault.new_performance(strategy, rows=10, seats_per_row=40) for strategy in STRATEGIES}


def start_loads(fault: Fault, name: str, performances: dict[str, tuple[int, list[int]]]) -> dict[str, Load]:
    return {
        strategy: Load(fault.container, pid, seats, tag=f"{name}-{strategy}", threads=2, pause=0.1).start()
        for strategy, (pid, seats) in performances.items()
    }


def stop(loads: dict[str, Load]) -> None:
    for load in loads.values():
        load.stop()


def run_with(
    fault: Fault,
    name: str,
    inject: Callable[[Run], None],
    before: float = 3,
    during: float = 0,
    after: float = 6,
) -> Result:
    """Five performances (one per strategy) booked by two clients each; the fault is injected `before`
    seconds in, counts as going on for `during` more seconds once `inject` returns (the aftermath of an
    instant loss: maps rebuilt, holds put back), and the bookings go on `after` seconds more; then drain,
    reconcile, check."""
    performances = performances_of(fault)
    consumers = Consumers(fault).start()
    run = Run(fault, performances, start_loads(fault, name, performances))
    with Sampler(fault, [pid for pid, _ in performances.values()]) as sampler:
        try:
            time.sleep(before)
            run.fault_started = time.monotonic()
            inject(run)
            time.sleep(during)
            run.fault_ended = time.monotonic()
            time.sleep(after)
        finally:
            stop(run.loads)
        drained = consumers.drain(timeout=240)
    return check(run, name, drained, sampler)


def check(run: Run, name: str, drained: float, sampler: Sampler) -> Result:
    fault = run.fault
    finals = {}
    for strategy, (pid, _) in run.performances.items():
        load = run.loads[strategy]
        repairs = reconcile(fault, pid)
        finals[strategy] = final = audit(fault, pid, load.accepted(), (), load.answers)
        before = load.between(0, run.fault_started)
        during = load.between(run.fault_started, run.fault_ended)
        after = load.between(run.fault_ended)
        log(
            f"{name:18} {strategy:15} before: {load.summary(before)} | during: {load.summary(during)} |"
            f" after: {load.summary(after)} | final {dict(Counter(final.values()))};"
            f" reconcile {dict(repairs) or 'nothing'}"
        )
        assert load.errors() == [], load.errors()[:3]
        assert max(answer.seconds for answer in load.answers) < HANG, "a request hung"
        assert before and during and after, "bookings flowed before, during and after the fault"
        assert ACCEPTED in {a.kind for a in before} and ACCEPTED in {a.kind for a in after}, load.summary()
        if strategy in PROMISING:
            promised = Counter(seat for booking in load.accepted() for seat in booking.seat_ids)
            assert [seat for seat, times in promised.items() if times > 1] == [], "a seat promised twice"
            assert "REJECTED" not in final.values(), f"{strategy}: a promise broken"
    longest = fault.sql(
        "SELECT MAX(TIMESTAMPDIFF(MICROSECOND, created_at, updated_at)) / 1e6 FROM bookings"
        " WHERE performance_id IN %s",
        tuple(pid for pid, _ in run.performances.values()),
    )[0][0]
    bound = fault.container.reconciler.hold_deadline_seconds + fault.settings.queue_retry_window_seconds()
    log(
        f"{name:18} drained {drained:.1f} s after the load stopped; longest accepted -> final"
        f" {float(longest or 0):.1f} s (bound {bound} s); samples {dict(sampler.samples)};"
        f" violations {len(sampler.violations)}; DLQs {[len(v) for v in fault.dead_letters().values()]}"
    )
    assert sampler.violations == [], sampler.violations[:5]
    assert sampler.samples["mysql"] > 0 and sampler.samples["redis"] > 0
    assert float(longest or 0) <= bound
    return Result(drained, finals, sampler.samples)


# --- the faults -------------------------------------------------------------------------------------------
@pytest.fixture()
def chaos(healthy: Fault) -> Iterator[Fault]:
    yield healthy
    healthy.clear_dead_letters()


def test_mysql_refusing_writes_for_40_s(chaos: Fault) -> None:
    fault = chaos
    parts = urlsplit(fault.settings.database_url)

    def write_lock(run: Run) -> None:
        session = pymysql.connect(host=parts.hostname, port=parts.port, user="root", autocommit=True)
        try:
            with session.cursor() as cursor:
                cursor.execute("FLUSH TABLES WITH READ LOCK")
                time.sleep(WRITE_LOCK_SECONDS)
                cursor.execute("UNLOCK TABLES")
        finally:
            session.close()

    result = run_with(fault, "mysql-write-lock", write_lock)
    assert result.finals["redis_async"], "bookings were accepted"


def test_a_performances_redis_keys_deleted_mid_run(chaos: Fault) -> None:
    def delete_keys(run: Run) -> None:
        client = run.fault.container.redis.unguarded()
        prefix = run.fault.settings.redis_key_prefix
        for pid, _ in run.performances.values():
            for key in client.scan_iter(match=f"{prefix}:{{p{pid}}}:*", count=1000):
                client.delete(key)

    run_with(chaos, "keys-deleted", delete_keys, during=2)


def test_flushall_mid_run(chaos: Fault) -> None:
    run_with(chaos, "flushall", lambda run: run.fault.container.redis.unguarded().flushall(), during=2)


def test_redis_hung_mid_run(chaos: Fault) -> None:
    def pause(run: Run) -> None:
        run.fault.container.redis.unguarded().execute_command("CLIENT", "PAUSE", 3000, "ALL")
        time.sleep(3)  # the pause itself: every command waits (and times out) until it is over

    run_with(chaos, "redis-hung", pause)


def test_the_worker_killed_mid_batch(chaos: Fault, tmp_path: Path) -> None:
    """The consumers are a worker process here (infra/local/worker.py, the fault settings): it is frozen
    with received messages in hand, SIGKILLed, and restarted with an empty ledger directory while bookings
    go on."""
    fault = chaos
    performances = performances_of(fault)

    def in_flight() -> int:
        return sum(
            int(
                fault.sqs.get_queue_attributes(
                    QueueUrl=pair.queue_url, AttributeNames=["ApproximateNumberOfMessagesNotVisible"]
                )["Attributes"]["ApproximateNumberOfMessagesNotVisible"]
            )
            for pair in (fault.booking, fault.fifo)
        )

    worker = start_worker(fault, tmp_path / "ledger-1", tmp_path / "worker.log")
    run = Run(fault, performances, start_loads(fault, "worker-killed", performances))
    restarted = None
    with Sampler(fault, [pid for pid, _ in performances.values()]) as sampler:
        try:
            time.sleep(3)
            run.fault_started = time.monotonic()
            held = 0
            while not held:  # freeze it until it is caught holding received messages
                worker.send_signal(signal.SIGSTOP)
                held = in_flight()
                if not held:
                    worker.send_signal(signal.SIGCONT)
                    wait_for(lambda: in_flight() > 0, 10, "the worker to receive a batch", 0.01)
            worker.send_signal(signal.SIGKILL)
            worker.wait(timeout=10)
            time.sleep(2)  # bookings go on with no consumer at all
            restarted = start_worker(fault, tmp_path / "ledger-2", tmp_path / "worker-restarted.log")
            run.fault_ended = time.monotonic()
            time.sleep(6)
        finally:
            stop(run.loads)
            for process in (worker, restarted):
                if process is not None and process.poll() is None:
                    process.send_signal(signal.SIGTERM)
                    process.wait(timeout=30)
        log(f"worker-killed: SIGKILLed holding {held} received messages")
        drained = Consumers(fault).drain(timeout=240)
    check(run, "worker-killed", drained, sampler)
