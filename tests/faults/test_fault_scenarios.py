"""Fault tests with real processes: under a booking load, Redis is SIGKILLed, MySQL is stopped for 30 s,
every message is delivered twice, the consumer process is SIGKILLed mid-batch, and poison messages are
injected. Each scenario then drains every queue and stream, runs reconcile, and checks docs/api.md's
invariants on the fault database and Redis: no seat in two active bookings, every 201/202 booking found
and final, the Redis seat map equal to MySQL seat by seat. The figures are printed (`pytest -s -m fault`).

The servers, queues and streams are the fault tests' own (tests/faults/conftest.py). Only correctness is
asserted, plus generous bounds that tell an answer from a hang."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
from ulid import ULID

from chalicelib.config import Settings
from chalicelib.domain.errors import ServiceUnavailable
from chalicelib.domain.models import BookingStatus
from chalicelib.domain.seat_holds import BookingRecord
from chalicelib.strategies.partitioning import section_partition
from tests.faults.harness import (
    ACCEPTED,
    FUNCTION_PREFIX,
    UNAVAILABLE,
    Consumers,
    Fault,
    Load,
    audit,
    log,
    reconcile,
    twice_concurrently,
    twice_in_a_row,
)
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.fault, pytest.mark.timeout(300)]
PROJECT_DIR = Path(__file__).resolve().parents[2]
ASYNCHRONOUS = ("redis_async", "fifo_partition", "stream_state")
IN_LINE = {"fifo_partition", "stream_state"}  # accept first, decide later: REJECTED is an ordinary outcome
HANG = 10.0  # no request may take longer than this, outage or not (socket and connect timeouts are ≤ 1 s)


def finish(
    fault: Fault,
    consumers: Consumers,
    performances: dict[str, tuple[int, list[int]]],
    loads: dict[str, Load],
    injected: dict[str, list[str]] | None = None,
) -> tuple[float, dict[str, dict[str, str]]]:
    """Drain, reconcile, audit every performance; -> (seconds to drain, strategy -> final statuses)."""
    drained = consumers.drain()
    finals = {}
    for strategy, (pid, _) in performances.items():
        repairs = reconcile(fault, pid)
        load = loads[strategy]
        finals[strategy] = audit(
            fault, pid, load.accepted(), (injected or {}).get(strategy, ()), load.answers
        )
        log(
            f"{strategy:15} final {dict(Counter(finals[strategy].values()))}; reconcile repairs"
            f" {dict(repairs) or 'none'}"
        )
    return drained, finals


# --- 1. Redis killed mid-load ------------------------------------------------------------------------------
def test_redis_killed_mid_load_answers_503_never_500_and_the_circuit_recovers(healthy: Fault) -> None:
    fault = healthy
    performances = {strategy: fault.new_performance(strategy) for strategy in ASYNCHRONOUS}
    consumers = Consumers(fault).start()
    loads = {
        strategy: Load(fault.container, pid, seats, tag=f"redis-{strategy}").start()
        for strategy, (pid, seats) in performances.items()
    }
    try:
        time.sleep(2)
        fault.redis_server.kill()  # SIGKILL: gone mid-whatever
        killed = time.monotonic()
        time.sleep(2)
        restarting = time.monotonic()
        fault.redis_server.start()  # back on the same port, empty (no persistence), as after a crash
        back = time.monotonic()
        time.sleep(5)
    finally:
        for load in loads.values():
            load.stop()
    log(f"Redis SIGKILLed for {back - killed:.1f} s under load (3 strategies x 3 clients)")

    for strategy, load in loads.items():
        during = load.between(killed, restarting)
        recovered = load.between(back + 3)
        log(f"{strategy:15} all: {load.summary()}")
        log(
            f"{strategy:15} outage: {load.summary(during)};"
            f" from 3 s after the restart: {load.summary(recovered)}"
        )
        assert load.errors() == [], load.errors()[:3]
        assert max(answer.seconds for answer in load.answers) < HANG, "a request hung"
        assert during and {answer.kind for answer in during} == {UNAVAILABLE}, Counter(a.kind for a in during)
        assert recovered and UNAVAILABLE not in {answer.kind for answer in recovered}, load.summary(recovered)
    assert fault.container.redis.breaker.state == "closed"

    drained, finals = finish(fault, consumers, performances, loads)
    log(f"drained in {drained:.1f} s; DLQs {[len(v) for v in fault.dead_letters().values()]}")
    assert finals["redis_async"], "bookings were accepted"
    assert all(len(letters) == 0 for letters in fault.dead_letters().values())


SENDERS = {
    "redis_async": ("booking_queue", "publish"),
    "fifo_partition": ("fifo_queue", "publish"),
    "stream_state": ("request_stream", "put"),
}


@pytest.mark.parametrize("strategy", ASYNCHRONOUS)
def test_redis_lost_after_the_booking_is_sent_still_answers_it_accepted(
    strategy, healthy: Fault, monkeypatch
) -> None:
    """The one window scenario 1 hits now and then, made certain: the booking is taken and its message sent,
    then Redis dies before Powertools stores the Idempotency-Key's answer. The booking stands (its message is
    on its way to MySQL), so the client must hear 202 — a 503 says that nothing was booked."""
    fault = healthy
    container = fault.container
    pid, seats = fault.new_performance(strategy)
    owner, method = SENDERS[strategy]
    send = getattr(getattr(container, owner), method)

    def send_then_lose_redis(*args):
        sent = send(*args)
        fault.redis_server.kill()
        return sent

    monkeypatch.setattr(getattr(container, owner), method, send_then_lose_redis)
    booking = container.booking_service.book(
        pid, {"user_id": "ann", "seat_ids": [seats[0]]}, f"lost-{strategy}"
    )
    monkeypatch.setattr(getattr(container, owner), method, send)
    fault.redis_server.start()

    assert booking.status is BookingStatus.PENDING
    Consumers(fault).drain()
    reconcile(fault, pid)
    final = audit(fault, pid, [booking])
    assert final == {booking.booking_id: "CONFIRMED"}


# --- 2. MySQL stopped for 30 s mid-load --------------------------------------------------------------------
def test_mysql_stopped_for_30_s_every_strategy_answers_503_and_keeps_what_it_accepted_before(
    healthy: Fault,
) -> None:
    """Every accepted booking is journaled in MySQL before its 202: with MySQL stopped, nothing is accepted
    (503, fast: no request hangs), and the bookings accepted just before the stop are confirmed once it is
    back (their consumers' retries outlast the outage)."""
    fault = healthy
    performances = {
        strategy: fault.new_performance(strategy, rows=10, seats_per_row=30) for strategy in ASYNCHRONOUS
    }
    sync_pid, sync_seats = fault.new_performance("db_lock")
    consumers = Consumers(fault).start()
    loads = {
        strategy: Load(fault.container, pid, seats, tag=f"mysql-{strategy}", threads=2, pause=0.25).start()
        for strategy, (pid, seats) in performances.items()
    }
    sync_answers: list[tuple[str, float]] = []
    try:
        time.sleep(3)
        fault.mariadb.stop()
        stopped = time.monotonic()
        seat = iter(sync_seats)
        while time.monotonic() - stopped < 30:  # db_lock, one short request a second
            started = time.monotonic()
            try:
                fault.container.booking_service.book(
                    sync_pid, {"user_id": "sync", "seat_ids": [next(seat)]}, None
                )
                sync_answers.append((ACCEPTED, time.monotonic() - started))
            except ServiceUnavailable:
                sync_answers.append((UNAVAILABLE, time.monotonic() - started))
            time.sleep(1)
        # The outage ends when start() is called: MySQL serves again before start() has seen it up.
        restarting = time.monotonic()
        fault.mariadb.start()
        back = time.monotonic()
        time.sleep(5)
    finally:
        for load in loads.values():
            load.stop()
    log(f"MySQL stopped for {back - stopped:.1f} s under load (3 strategies x 2 clients, 4 req/s each)")

    kinds = Counter(kind for kind, _ in sync_answers)
    slowest = max(seconds for _, seconds in sync_answers)
    log(f"db_lock during the outage: {dict(kinds)}; slowest answer {slowest * 1000:.0f} ms")
    assert set(kinds) == {UNAVAILABLE} and slowest < HANG
    wait_for(lambda: _books(fault, sync_pid, next(seat)), 10, "db_lock to book again once MySQL is back", 0.2)

    outage_accepted = {}
    for strategy, load in loads.items():
        during = load.between(stopped + 0.5, restarting)
        log(f"{strategy:15} all: {load.summary()}; outage: {load.summary(during)}")
        assert load.errors() == [], load.errors()[:3]
        assert max(answer.seconds for answer in load.answers) < HANG, "a request hung"
        kinds = Counter(answer.kind for answer in during)
        assert kinds[ACCEPTED] == 0 and kinds[UNAVAILABLE] > 0, kinds
        outage_accepted[strategy] = [answer for answer in load.answers if answer.started < stopped]

    drained = consumers.drain(timeout=240)
    # The retry window (8 deliveries, backoff 2 … 60 s: over 3 minutes) outlasts the outage: nothing was given
    # up on, nothing reached a DLQ, every booking accepted while MySQL was down was decided once it returned.
    letters = {label: len(found) for label, found in fault.dead_letters().items()}
    log(f"drained in {drained:.1f} s after MySQL returned; DLQs {letters}")
    assert set(letters.values()) == {0}, letters
    for strategy, (pid, _) in performances.items():
        repairs = reconcile(fault, pid)
        final = audit(fault, pid, loads[strategy].accepted(), (), loads[strategy].answers)
        in_outage = Counter(final[a.booking.booking_id] for a in outage_accepted[strategy] if a.booking)
        log(
            f"{strategy:15} final {dict(Counter(final.values()))}; accepted before the outage -> "
            f"{dict(in_outage)}; reconcile repairs {dict(repairs) or 'none'}"
        )
        # No accepted booking is given up on. A FAILED row of a request answered 503 may be there: a commit
        # in flight as MySQL stopped ends uncertain, the take stays until reconcile writes its FAILED claim
        # (stale_holds_failed); audit() checked that each such row's client was told 503.
        given_up = [b.booking_id for b in loads[strategy].accepted() if final[b.booking_id] == "FAILED"]
        assert given_up == [], (strategy, in_outage, given_up)
        if strategy not in IN_LINE:
            # Seats are held at acceptance (journaled in MySQL): what was accepted is confirmed.
            assert set(in_outage) == {"CONFIRMED"}, (strategy, in_outage)


def test_idempotency_records_of_two_scopes_in_flight_at_once_stay_apart(healthy: Fault) -> None:
    """What scenario 2 first found (when the consumer still kept idempotency records; it settles by
    compare-and-set in MySQL now): a record left INPROGRESS under another scope's key, because one Powertools
    persistence layer served every scope and each call rewrites its key prefix. The adapter keeps one layer
    per scope; here two scopes run at once on two threads."""
    idempotency = healthy.container.idempotency
    message, key = f"message-{ULID()}", f"key-{ULID()}"
    consumer_running, request_started, consumer_done = threading.Event(), threading.Event(), threading.Event()

    def consume() -> dict:
        consumer_running.set()
        assert request_started.wait(10)
        return {"status": "CONFIRMED"}

    def request() -> None:
        assert consumer_running.wait(10)

        def book() -> dict:
            request_started.set()
            assert consumer_done.wait(10)
            return {"booking_id": "b-1"}

        idempotency.run_once("book", key, {"seat_ids": [1]}, book)

    other = threading.Thread(target=request)
    other.start()
    assert idempotency.run_once("cancel", message, {}, consume) == {"status": "CONFIRMED"}
    consumer_done.set()
    other.join(10)

    def never() -> dict:
        raise AssertionError("ran twice")

    # Repeated: answered from the record (not IDEMPOTENCY_IN_PROGRESS); the other scope's key likewise.
    assert idempotency.run_once("cancel", message, {}, never) == {"status": "CONFIRMED"}
    assert idempotency.run_once("book", key, {"seat_ids": [1]}, never) == {"booking_id": "b-1"}


def _books(fault: Fault, pid: int, seat: int) -> bool:
    try:
        booking = fault.container.booking_service.book(pid, {"user_id": "after", "seat_ids": [seat]}, None)
    except ServiceUnavailable:
        return False
    assert booking.status is BookingStatus.CONFIRMED
    return True


# --- 3. every message delivered twice ----------------------------------------------------------------------
def _resent(body: str) -> str:
    """The same message as another sender would serialise it: nothing that keys on the body's bytes can
    recognise the duplicate; only the booking's row in MySQL (settled by compare-and-set) does."""
    return json.dumps(json.loads(body))


@pytest.mark.parametrize("strategy", ASYNCHRONOUS)
def test_every_message_delivered_twice_books_each_booking_once(strategy, healthy: Fault, monkeypatch) -> None:
    fault = healthy
    container = fault.container
    pid, seats = fault.new_performance(strategy)
    booking_publish, fifo_publish, put = (
        container.booking_queue.publish,
        container.fifo_queue.publish,
        container.request_stream.put,
    )

    def booking_twice(message: dict) -> None:
        booking_publish(message)
        booking_publish({**message, "body": _resent(message["body"])})

    def fifo_twice(message: dict) -> None:
        fifo_publish(message)  # a new deduplication id: SQS FIFO would drop an exact resend itself
        again = {"body": _resent(message["body"]), "deduplication_id": message["deduplication_id"] + "-again"}
        fifo_publish({**message, **again})

    def put_twice(data: str, partition_key: str) -> str:
        sequence_number = put(data, partition_key)
        put(_resent(data), partition_key)
        return sequence_number

    monkeypatch.setattr(container.booking_queue, "publish", booking_twice)
    monkeypatch.setattr(container.fifo_queue, "publish", fifo_twice)
    monkeypatch.setattr(container.request_stream, "put", put_twice)
    deliveries: Counter = Counter()
    consumers = Consumers(
        fault,
        wrap_sqs=lambda handler: twice_concurrently(handler, deliveries),
        wrap_fifo=lambda handler: twice_in_a_row(handler, deliveries),
        wrap_kinesis=lambda handler: twice_in_a_row(handler, deliveries),
    ).start()
    load = Load(container, pid, seats, tag=f"twice-{strategy}").start()
    time.sleep(3)
    load.stop()
    drained = consumers.drain()

    repairs = reconcile(fault, pid)
    final = audit(fault, pid, load.accepted(), (), load.answers)
    log(
        f"{strategy:15} every message sent twice, every batch invoked twice: {load.summary()};"
        f" {deliveries['records']} record deliveries in {deliveries['invocations']} invocations;"
        f" drained in {drained:.1f} s; final {dict(Counter(final.values()))};"
        f" repairs {dict(repairs) or 'none'}"
    )
    assert load.errors() == []
    assert final, "bookings were accepted"
    assert sum(repairs.values()) == 0, "duplicates made Redis drift from MySQL"
    if strategy not in IN_LINE:
        assert set(final.values()) == {"CONFIRMED"}
    logged = fault.sql(
        "SELECT action, COUNT(*) FROM reconcile_log WHERE performance_id = %s GROUP BY action", pid
    )
    assert logged == [], f"a duplicate was taken for a failure: {logged}"


def test_a_transient_failure_in_a_fifo_group_keeps_the_line_in_order(healthy: Fault, monkeypatch) -> None:
    """Two requests for one seat wait in one section's line; the first one's consumer fails once (a blip).
    First come, first served must still hold: the later request may not be decided while the earlier one
    backs off (nor may the line stall for a whole visibility timeout)."""
    fault = healthy
    container = fault.container
    pid, seats = fault.new_performance("fifo_partition")
    first, second = (
        container.booking_service.book(pid, {"user_id": user, "seat_ids": [seats[0]]}, None)
        for user in ("first", "second")
    )
    strategy = container.strategies["fifo_partition"]
    finish, decided = strategy.finish, []

    def blip_once(message):
        decided.append("first" if message.booking_id == first.booking_id else "second")
        if decided == ["first"]:
            raise RuntimeError("a blip")
        return finish(message)

    monkeypatch.setattr(strategy, "finish", blip_once)
    drained = Consumers(fault).drain()
    final = audit(fault, pid, [first, second])
    log(f"fifo_partition, first in line failed once: decided {decided}, drained in {drained:.1f} s")
    assert final == {first.booking_id: "CONFIRMED", second.booking_id: "REJECTED"}
    assert decided == ["first", "first", "second"]


# --- 4. the consumer process SIGKILLed mid-batch -----------------------------------------------------------
def worker_environment(settings: Settings, ledger_dir: Path) -> dict[str, str]:
    """What the worker subprocess builds its own container from: every one of the fault world's settings
    (app.py's decorators read the queue and stream names from Settings at import, so they must be in the
    environment before it starts), but a ledger directory of its own (the test process holds the fault
    ledger's RocksDB directory open)."""
    worker = settings.replace(ledger_dir=str(ledger_dir))
    environment = {**os.environ, **worker.as_environment()}
    assert Settings.from_env(environment) == worker, "the worker would run with other settings"
    return environment


def start_worker(fault: Fault, ledger_dir: Path, log_file: Path) -> subprocess.Popen:
    with log_file.open("ab") as output:
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "infra.local.worker",
                "--stage",
                "local",  # the environment is complete and wins over the stage's values
                "--processes",
                "1",  # the one process this test freezes and kills (several: test_worker_processes.py)
                "--stream-checkpoints",
                str(fault.checkpoints.path),
                "--function-name-prefix",
                FUNCTION_PREFIX,  # the in-process Kinesis event sources' checkpoints
            ],
            cwd=PROJECT_DIR,
            env=worker_environment(fault.settings, ledger_dir),
            stdout=output,
            stderr=subprocess.STDOUT,
        )


def test_a_consumer_killed_mid_batch_has_its_batch_redelivered_and_processed_once(
    healthy: Fault, tmp_path: Path
) -> None:
    fault = healthy
    pid, seats = fault.new_performance("redis_async", rows=10, seats_per_row=20)
    load = Load(fault.container, pid, seats, tag="kill", threads=4, pause=0.02).start()
    time.sleep(3)
    load.stop()
    accepted = load.accepted()
    assert len(accepted) >= 30, load.summary()

    def confirmed() -> int:
        return fault.sql(
            "SELECT COUNT(*) FROM bookings WHERE performance_id = %s AND status = 'CONFIRMED'", pid
        )[0][0]

    def in_flight() -> int:
        attributes = fault.sqs.get_queue_attributes(
            QueueUrl=fault.booking.queue_url, AttributeNames=["ApproximateNumberOfMessagesNotVisible"]
        )["Attributes"]
        return int(attributes["ApproximateNumberOfMessagesNotVisible"])

    log_file = tmp_path / "worker.log"
    worker = start_worker(fault, tmp_path / "ledger-1", log_file)
    try:
        wait_for(lambda: confirmed() >= 5, 60, "the worker to confirm its first bookings")
        # Freeze MySQL so the worker is certainly mid-batch (messages received, their settling in flight)
        # when it is killed; MySQL wakes up right after, to a client that is gone.
        fault.mariadb.pause()
        wait_for(lambda: in_flight() > 0, 15, "a batch in the worker's hands")
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=10)
        killed = time.monotonic()
    finally:
        if worker.poll() is None:
            worker.kill()
        fault.mariadb.resume()
    held = in_flight()
    at_kill = confirmed()
    assert held > 0 and at_kill < len(accepted), "the worker was meant to die with a batch in hand"

    restarted_log = tmp_path / "worker-restarted.log"
    restarted = start_worker(fault, tmp_path / "ledger-2", restarted_log)
    try:
        wait_for(
            lambda: confirmed() == len(accepted),
            150,
            "every accepted booking to be confirmed after the restart",
            0.2,
        )
        all_final = time.monotonic()
    finally:
        restarted.send_signal(signal.SIGTERM)
        restarted.wait(timeout=30)

    drained = Consumers(fault).drain()
    repairs = reconcile(fault, pid)
    final = audit(fault, pid, accepted, (), load.answers)
    log(
        f"worker SIGKILLed mid-batch: {len(accepted)} accepted, {at_kill} confirmed at the kill,"
        f" {held} messages in flight; restarted worker: all confirmed {all_final - killed:.1f} s after the"
        f" kill (visibility timeout {fault.settings.queue_visibility_timeout_seconds} s); in-process drain"
        f" {drained:.1f} s; final {dict(Counter(final.values()))}; repairs {dict(repairs) or 'none'}"
    )
    assert set(final.values()) == {"CONFIRMED"}
    assert all(letters == [] for letters in fault.dead_letters().values())


# --- 5. poison messages ------------------------------------------------------------------------------------
def test_poison_messages_reach_the_dlq_compensated_where_the_booking_is_known(healthy: Fault) -> None:
    fault = healthy
    container = fault.container
    performances = {strategy: fault.new_performance(strategy) for strategy in ASYNCHRONOUS}
    (a_pid, a_seats), (f_pid, f_seats), (s_pid, s_seats) = performances.values()
    quiet_pid, quiet_seats = fault.new_performance("redis_async", rows=1, seats_per_row=10)
    # Bookings the request path accepted whose one message then arrives corrupted: journaled in MySQL, with
    # their Redis records (and, for redis_async, their holds), as the request path left them.
    known = {name: str(ULID()) for name in ("async-seats", "async-strategy", "fifo-seats")}
    holds = [
        BookingRecord(
            known["async-seats"], a_pid, "poison-1", (a_seats[0],), "redis_async", BookingStatus.PENDING
        ),
        BookingRecord(
            known["async-strategy"],
            a_pid,
            "poison-2",
            (a_seats[1], a_seats[2]),
            "redis_async",
            BookingStatus.PENDING,
        ),
    ]
    for record in holds:
        container.bookings.insert(record.as_booking())
        container.seat_store.reserve(record)
    in_line = BookingRecord(
        known["fifo-seats"], f_pid, "poison-3", (f_seats[0],), "fifo_partition", BookingStatus.PENDING
    )
    container.bookings.insert_in_line(in_line.as_booking())
    container.seat_store.remember(in_line)
    unknown, phantom = str(ULID()), str(ULID())

    def message(booking_id, pid, seat_ids, strategy="redis_async", user="poison") -> str:
        return json.dumps(
            {
                "booking_id": booking_id,
                "performance_id": pid,
                "user_id": user,
                "seat_ids": seat_ids,
                "strategy": strategy,
            }
        )

    booking_poison = [
        "this is not JSON {",
        "[1, 2, 3]",
        message(12345, a_pid, [a_seats[3]]),  # no usable booking id
        message(known["async-seats"], a_pid, "oops", user="poison-1"),
        message(known["async-strategy"], a_pid, [a_seats[1], a_seats[2]], "no_such_strategy", "poison-2"),
        message(unknown, a_pid, [0]),  # a booking nobody knows, and a seat id that cannot be
    ]
    fifo_group = section_partition(container.catalogue.performance(f_pid), f_pid, (f_seats[0],))
    fifo_poison = [
        "garbage in line",
        message(known["fifo-seats"], f_pid, [True], "fifo_partition", "poison-3"),
    ]
    stream_key = section_partition(container.catalogue.performance(s_pid), s_pid, (s_seats[0],))
    stream_poison = [b"\xff\xfe not UTF-8", b"garbage", b'{"type": "booking.release", "booking_id": "x"}']
    # Well-formed, but for a booking id the service never issued (on a performance nobody else books).
    forged = message(phantom, quiet_pid, [quiet_seats[0]], user="forger")

    consumers = Consumers(fault).start()
    loads = {
        strategy: Load(container, pid, seats, tag=f"poison-{strategy}").start()
        for strategy, (pid, seats) in performances.items()
    }
    try:
        time.sleep(1)
        for body in [*booking_poison, forged]:
            fault.sqs.send_message(QueueUrl=fault.booking.queue_url, MessageBody=body)
        for number, body in enumerate(fifo_poison):
            fault.sqs.send_message(
                QueueUrl=fault.fifo.queue_url,
                MessageBody=body,
                MessageGroupId=fifo_group,  # in line with the real requests of that section
                MessageDeduplicationId=f"poison-{number}-{ULID()}",
            )
        for data in stream_poison:
            fault.kinesis.put_record(
                StreamName=fault.settings.request_stream_name, Data=data, PartitionKey=stream_key
            )
        time.sleep(3)
    finally:
        for load in loads.values():
            load.stop()
    drained, finals = finish(
        fault,
        consumers,
        performances,
        loads,
        injected={
            "redis_async": [known["async-seats"], known["async-strategy"]],
            "fifo_partition": [known["fifo-seats"]],
        },
    )

    letters = fault.dead_letters()
    log(
        f"poison: {len(booking_poison)} + 1 forged on the booking queue,"
        f" {len(fifo_poison)} on the FIFO queue,"
        f" {len(stream_poison)} on the stream; drained in {drained:.1f} s; DLQs"
        f" { ({label: len(found) for label, found in letters.items()}) }"
    )
    for strategy, load in loads.items():
        log(f"{strategy:15} {load.summary()}")
        assert load.errors() == []
    assert sorted(letter.body for letter in letters["booking"]) == sorted(booking_poison)
    for letter in [*letters["booking"], *letters["fifo"]]:
        assert letter.receive_count >= fault.settings.max_receive_count, letter
    # The FIFO poison sat in line with real requests: each of its deliveries was one for the requests behind
    # it too. Those at their last delivery are decided (never left uncompensated), but the local event
    # source keeps a failed message's later group mates on the queue, so SQS then moves them to the DLQ too,
    # already decided: a redrive of them changes nothing.
    fifo_letters = Counter(letter.body for letter in letters["fifo"])
    assert all(fifo_letters[body] == 1 for body in fifo_poison), fifo_letters
    in_line_behind = [letter.booking_id for letter in letters["fifo"] if letter.body not in fifo_poison]
    assert {finals["fifo_partition"][b] for b in in_line_behind} <= {"CONFIRMED", "REJECTED"}
    log(
        f"FIFO DLQ: {len(fifo_poison)} poison + {len(in_line_behind)} decided requests that were in line"
        " behind it"
    )
    # Compensated where the booking is known: FAILED in MySQL, its seats free again (the audit checked the
    # map), and the reason logged.
    for name, booking_id in known.items():
        assert container.booking_service.get(booking_id).status is BookingStatus.FAILED, name
        actions = {
            a for (a,) in fault.sql("SELECT action FROM reconcile_log WHERE booking_id = %s", booking_id)
        }
        assert actions == {"booking_failed", "poison_message"}, (name, actions)
    assert fault.sql("SELECT COUNT(*) FROM bookings WHERE booking_id = %s", unknown) == [(0,)]
    poison_rows = fault.sql("SELECT COUNT(*) FROM reconcile_log WHERE action = 'poison_message'")[0][0]
    assert poison_rows >= len(booking_poison) + len(fifo_poison)
    # Every other booking unaffected: the audits above; redis_async decides at request time.
    assert set(finals["redis_async"][b.booking_id] for b in loads["redis_async"].accepted()) == {"CONFIRMED"}

    reconcile(fault, quiet_pid)
    forged_final = audit(fault, quiet_pid, [], injected=[phantom])
    log(
        "a well-formed message for a booking id never issued: stored as"
        f" {forged_final.get(phantom, 'nothing')}"
    )
