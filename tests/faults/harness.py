"""What every fault scenario needs: a load generator that records every answer, the fault container's
consumers (the local event sources with Lambda's semantics) that can be drained to the last backed-off
message, and the audit of docs/api.md's invariants on the fault database and Redis."""

from __future__ import annotations

import random
import statistics
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import boto3
import pymysql

from chalicelib.bootstrap import Container
from chalicelib.config import Settings
from chalicelib.domain.errors import BookingError, SeatUnavailable, ServiceUnavailable
from chalicelib.domain.models import Booking, BookingStatus
from infra.dlq import DeadLetter, DeadLetterQueue
from infra.local.kinesis_poller import FileCheckpoints, KinesisEventSourcePoller
from infra.local.sqs_poller import SqsEventSourcePoller
from infra.provision import QueuePair
from tests.support import draining
from tests.support.factories import event_body
from tests.support.reconcile import past_the_deadline, reconciler_later
from tests.support.servers import MariaDBServer, RedisServer

# How an answer of POST /performances/{id}/bookings would leave the service (app.py's json_errors).
ACCEPTED, REFUSED, UNAVAILABLE, CLIENT_ERROR, SERVER_ERROR = "201/202", "409", "503", "other 4xx", "500"
FUNCTION_PREFIX = "fault"  # the worker subprocess gets the same prefix: it shares the Kinesis checkpoints


def log(line: str) -> None:
    """Figures for the closing note (shown with `pytest -s`)."""
    print(f"[fault] {line}", flush=True)


# --- the fault environment --------------------------------------------------------------------------------
@dataclass
class Fault:
    """The fault container and the resources of its own: MariaDB, Redis, queues, streams."""

    container: Container
    settings: Settings
    mariadb: MariaDBServer
    redis_server: RedisServer
    booking: QueuePair
    fifo: QueuePair
    checkpoints: FileCheckpoints
    sqs: Any = field(init=False)
    kinesis: Any = field(init=False)
    # Consumers a scenario started and has not stopped: the `healthy` fixture stops them after a failed
    # scenario, so its pollers cannot take the next scenario's messages.
    running: list[Consumers] = field(init=False, default_factory=list)

    def __post_init__(self) -> None:
        def client(service: str) -> Any:
            return boto3.client(
                service, endpoint_url=self.settings.aws_endpoint_url, region_name=self.settings.aws_region
            )

        self.sqs, self.kinesis = client("sqs"), client("kinesis")

    # MySQL, on a connection of its own per call (the server is stopped and restarted in between) ---------
    def sql(self, query: str, *args: Any) -> list[tuple]:
        parts = urlsplit(self.settings.database_url)
        connection = pymysql.connect(
            host=parts.hostname,
            port=parts.port,
            user=parts.username or "root",
            database=parts.path.lstrip("/"),
            autocommit=True,
            connect_timeout=5,
        )
        try:
            with connection.cursor() as cursor:
                cursor.execute(query, args)
                return list(cursor.fetchall())
        finally:
            connection.close()

    def new_performance(self, strategy: str, rows: int = 3, seats_per_row: int = 20) -> tuple[int, list[int]]:
        """A performance with one section, read once by the container (as a warm Lambda has)."""
        event = self.container.catalogue.create_event(
            event_body(strategy=strategy, rows=rows, seats_per_row=seats_per_row)
        )
        performance = event["performances"][0]
        pid = performance["performance_id"]
        self.container.catalogue.performance(pid)
        first = performance["sections"][0]["first_seat_id"]
        return pid, list(range(first, first + rows * seats_per_row))

    # queues ---------------------------------------------------------------------------------------------
    def waiting(self, queue_url: str) -> int:
        """Messages on a queue: visible, in flight (received or backing off) and delayed."""
        return draining.messages_on(self.sqs, [queue_url])

    def dead_letters(self) -> dict[str, list[DeadLetter]]:
        return {
            label: DeadLetterQueue(self.sqs, label, pair.dlq_url, pair.queue_url, wait_seconds=0).peek()
            for label, pair in (("booking", self.booking), ("fifo", self.fifo))
        }

    def clear_dead_letters(self) -> None:
        """Delete every dead letter (PurgeQueue is allowed once a minute per queue)."""
        for pair in (self.booking, self.fifo):
            while True:
                received = self.sqs.receive_message(
                    QueueUrl=pair.dlq_url, MaxNumberOfMessages=10, VisibilityTimeout=60
                ).get("Messages", [])
                if not received:
                    break
                self.sqs.delete_message_batch(
                    QueueUrl=pair.dlq_url,
                    Entries=[
                        {"Id": str(number), "ReceiptHandle": message["ReceiptHandle"]}
                        for number, message in enumerate(received)
                    ],
                )


# --- load -------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Answer:
    kind: str
    started: float  # time.monotonic() when the request was made
    seconds: float
    user_id: str
    idempotency_key: str | None
    booking: Booking | None = None
    error: BaseException | None = None


def classify(outcome: object) -> str:
    if isinstance(outcome, Booking):
        return ACCEPTED
    if isinstance(outcome, SeatUnavailable):
        return REFUSED
    if isinstance(outcome, ServiceUnavailable):  # CacheUnavailable included
        return UNAVAILABLE
    if isinstance(outcome, BookingError) and outcome.status < 500:
        return CLIENT_ERROR
    return SERVER_ERROR  # anything else leaves app.py as a 500


class Load:
    """`threads` clients booking random 1–3 seat sets of one performance until stopped; every third request
    carries an Idempotency-Key. Every answer is recorded with its start time and duration."""

    def __init__(
        self,
        container: Container,
        performance_id: int,
        seat_ids: list[int],
        *,
        tag: str,
        threads: int = 3,
        pause: float = 0.05,
        seed: int = 20261201,
    ) -> None:
        self._book = container.booking_service.book
        self.performance_id = performance_id
        self.seat_ids = seat_ids
        self.tag = tag
        self._pause = pause
        self._seed = seed
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self.answers: list[Answer] = []
        self._threads = [
            threading.Thread(target=self._client, args=(number,), name=f"load-{tag}-{number}", daemon=True)
            for number in range(threads)
        ]

    def start(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def stop(self, timeout: float = 60) -> None:
        self._stopping.set()
        for thread in self._threads:
            thread.join(timeout)
        hung = [thread.name for thread in self._threads if thread.is_alive()]
        assert hung == [], f"requests still unanswered {timeout} s after the load stopped: {hung}"

    def _client(self, number: int) -> None:
        rng = random.Random(self._seed * 100 + number)
        sequence = 0
        while not self._stopping.is_set():
            seats = sorted(rng.sample(self.seat_ids, rng.randint(1, 3)))
            name = f"{self.tag}-{number}-{sequence}"
            key = name if sequence % 3 == 0 else None
            started = time.monotonic()
            try:
                outcome: object = self._book(self.performance_id, {"user_id": name, "seat_ids": seats}, key)
            except Exception as exc:
                outcome = exc
            answer = Answer(
                kind=classify(outcome),
                started=started,
                seconds=time.monotonic() - started,
                user_id=name,
                idempotency_key=key,
                booking=outcome if isinstance(outcome, Booking) else None,
                error=outcome if isinstance(outcome, BaseException) else None,
            )
            with self._lock:
                self.answers.append(answer)
            sequence += 1
            self._stopping.wait(self._pause)

    def accepted(self) -> list[Booking]:
        return [answer.booking for answer in self.answers if answer.booking is not None]

    def between(self, start: float, end: float = float("inf")) -> list[Answer]:
        return [answer for answer in self.answers if start <= answer.started < end]

    def errors(self) -> list[str]:
        """The answers that must never happen: a 500, or a 4xx other than 409 for a valid request."""
        return [
            f"{answer.kind}: {answer.error!r}"
            for answer in self.answers
            if answer.kind in (SERVER_ERROR, CLIENT_ERROR)
        ]

    def summary(self, answers: Iterable[Answer] | None = None) -> str:
        answers = list(self.answers if answers is None else answers)
        kinds = Counter(answer.kind for answer in answers)
        seconds = [answer.seconds for answer in answers] or [0.0]
        return (
            f"{len(answers)} requests: "
            + ", ".join(
                f"{kinds[k]} {k}" for k in (ACCEPTED, REFUSED, UNAVAILABLE, CLIENT_ERROR, SERVER_ERROR)
            )
            + f"; latency p50 {statistics.median(seconds) * 1000:.0f} ms, max {max(seconds) * 1000:.0f} ms"
        )


# --- consumers -----------------------------------------------------------------------------------------
Handler = Callable[[dict, Any], Any]


def twice_concurrently(handler: Handler, counter: Counter) -> Handler:
    """Every batch delivered twice at the same moment (standard SQS may hand a message to two consumers).
    A message stays on the queue only if both invocations report it failed."""

    def invoke(event: dict, context: Any) -> dict:
        results: list[Any] = [None, None]

        def run(index: int) -> None:
            try:
                results[index] = handler(event, context)
            except Exception as exc:
                results[index] = exc

        threads = [threading.Thread(target=run, args=(index,)) for index in (0, 1)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        counter["invocations"] += 2
        counter["records"] += 2 * len(event["Records"])
        failed = None
        for result in results:
            if isinstance(result, Exception):
                continue  # the other invocation decides
            ids = {item["itemIdentifier"] for item in (result or {}).get("batchItemFailures") or []}
            failed = ids if failed is None else failed & ids
        if failed is None:
            raise RuntimeError("both invocations failed")
        return {"batchItemFailures": [{"itemIdentifier": identifier} for identifier in sorted(failed)]}

    return invoke


def twice_in_a_row(handler: Handler, counter: Counter) -> Handler:
    """Every batch delivered, then delivered again (a retried batch: FIFO groups and Kinesis shards never
    run two invocations at once). The second answer is the one the event source sees."""

    def invoke(event: dict, context: Any) -> Any:
        handler(event, context)
        counter["invocations"] += 2
        counter["records"] += 2 * len(event["Records"])
        return handler(event, context)

    return invoke


class Consumers:
    """The fault container's four event sources, as the worker wires them for app.py's handlers."""

    def __init__(
        self,
        fault: Fault,
        *,
        wrap_sqs: Callable[[Handler], Handler] = lambda handler: handler,
        wrap_fifo: Callable[[Handler], Handler] = lambda handler: handler,
        wrap_kinesis: Callable[[Handler], Handler] = lambda handler: handler,
    ) -> None:
        self._fault = fault
        container, settings = fault.container, fault.settings
        self.sqs_pollers = [
            SqsEventSourcePoller(
                wrap(handler),
                pair.queue_url,
                fault.sqs,
                batch_size=10,
                function_name=f"{FUNCTION_PREFIX}-{name}",
                wait_time_seconds=1,
                concurrency=2,
            )
            for wrap, handler, pair, name in (
                (wrap_sqs, container.booking_batch_handler, fault.booking, "on_booking_event"),
                (wrap_fifo, container.fifo_batch_handler, fault.fifo, "on_booking_request_in_line"),
            )
        ]
        self.kinesis_pollers = [
            KinesisEventSourcePoller(
                wrap_kinesis(handler),
                stream,
                fault.kinesis,
                batch_size=100,
                function_name=f"{FUNCTION_PREFIX}-{name}",
                checkpoints=fault.checkpoints,
            )
            for handler, stream, name in (
                (container.ledger_batch_handler, settings.request_stream_name, "on_seat_request"),
                (container.persister_batch_handler, settings.changelog_stream_name, "on_seat_decision"),
            )
        ]
        self._all = [*self.sqs_pollers, *self.kinesis_pollers]

    def start(self) -> Consumers:
        self._fault.running.append(self)
        for poller in self._all:
            poller.start()
        return self

    def stop(self) -> None:
        for poller in self._all:
            poller.stop(timeout=60)
        if self in self._fault.running:
            self._fault.running.remove(self)

    def drain(self, timeout: float = 180) -> float:
        """Stop the background workers, then deliver until every queue is empty (backed-off messages
        included) and no stream yields anything. -> seconds it took."""
        started = time.monotonic()
        self.stop()
        queues = (self._fault.booking.queue_url, self._fault.fifo.queue_url)
        draining.drain(self._all, lambda: sum(self._fault.waiting(url) for url in queues), timeout)
        return time.monotonic() - started


# --- the invariants ------------------------------------------------------------------------------------
def audit(
    fault: Fault,
    performance_id: int,
    accepted: list[Booking],
    injected: Iterable[str] = (),
    answers: Iterable[Answer] = (),
) -> dict:
    """docs/api.md's invariants for one performance, after the drain and reconcile. `injected`: booking
    ids the scenario put on a queue itself (they may be stored too); `answers`, to explain a stored booking
    whose client was not told 201/202. -> booking id -> final status."""
    container = fault.container
    double = fault.sql(
        "SELECT seat_id, COUNT(*) FROM booking_seats WHERE performance_id = %s AND active = 1"
        " GROUP BY seat_id HAVING COUNT(*) > 1",
        performance_id,
    )
    assert double == [], f"1. seats in two active bookings: {double}"

    stored = dict(
        fault.sql("SELECT booking_id, status FROM bookings WHERE performance_id = %s", performance_id)
    )
    accepted_ids = {booking.booking_id for booking in accepted}
    assert len(accepted_ids) == len(accepted), "a booking id was handed out twice"
    missing = accepted_ids - set(stored)
    assert not missing, f"2. accepted bookings MySQL never stored: {sorted(missing)[:5]} ({len(missing)})"
    unexpected = set(stored) - accepted_ids - set(injected)
    if unexpected:
        # A request journaled in MySQL and then answered 503 (its send failed, or its commit's outcome could
        # not be known in time) leaves a booking that never holds anything: FAILED. Anything else is a
        # booking some client was never told about.
        told = {answer.user_id: answer for answer in answers}
        users = fault.sql(
            "SELECT booking_id, user_id, status FROM bookings WHERE booking_id IN %s", sorted(unexpected)
        )
        unexplained = [
            (b, status, told.get(user))
            for b, user, status in users
            if not (status == "FAILED" and user in told and told[user].kind == UNAVAILABLE)
        ]
        assert unexplained == [], f"4. bookings stored whose client was not answered 201/202: {unexplained}"
    pending = [booking_id for booking_id, status in stored.items() if status == "PENDING"]
    assert pending == [], f"2. bookings never final: {pending[:5]}"
    for booking in accepted:
        read = container.booking_service.get(booking.booking_id)
        assert read.status.is_final and read.status.value == stored[booking.booking_id], (booking, read)
        assert read.seat_ids == booking.seat_ids, (booking, read)

    rows = fault.sql(
        "SELECT booking_id, COUNT(*), COUNT(active) FROM booking_seats WHERE performance_id = %s"
        " GROUP BY booking_id",
        performance_id,
    )
    seats_of = {booking.booking_id: set(booking.seat_ids) for booking in accepted}
    for booking_id, count, active_count in rows:
        if booking_id in seats_of:
            assert count == len(seats_of[booking_id]), f"{booking_id}: {count} seat rows"
        holds = stored[booking_id] == BookingStatus.CONFIRMED.value
        assert active_count == (count if holds else 0), f"{booking_id} {stored[booking_id]}: {active_count}"
    active = dict(
        fault.sql(
            "SELECT seat_id, booking_id FROM booking_seats WHERE performance_id = %s AND active = 1",
            performance_id,
        )
    )

    states = container.seat_store.seat_states(performance_id)
    if states is None:  # the map was dropped (Redis restarted) and nobody has read it since
        container.seat_state.publish(container.catalogue.performance(performance_id))
        states = container.seat_store.seat_states(performance_id)
    taken = {seat: state for seat, state in states.items() if state != "0"}
    expected = {seat: f"B:{booking_id}" for seat, booking_id in active.items()}
    drift = {seat: (taken.get(seat), expected.get(seat)) for seat in set(taken) | set(expected)}
    drift = {seat: pair for seat, pair in drift.items() if pair[0] != pair[1]}
    assert drift == {}, f"3. the Redis seat map and MySQL disagree (redis, mysql): {drift}"
    return stored


def reconcile(fault: Fault, performance_id: int) -> Counter:
    """The reconcile job after the drain, its clock past the hold deadline: nothing is in flight any more, so
    whatever is still PENDING (a booking whose commit outcome was unknown, a hold whose journal write never
    came back) is settled now, as the scheduled job would settle it once the deadline passed."""
    live = fault.container.reconciler
    summary = reconciler_later(live, past_the_deadline(live)).run(performance_id)
    assert summary.errors == 0, summary
    return summary.repairs
