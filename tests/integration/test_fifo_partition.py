"""`fifo_partition` on real MariaDB, real Redis and moto's SQS FIFO queue, delivered by the local poller:
requests wait in line per section and are decided in that order, without any lock."""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import boto3
import pymysql
import pytest
import redis
from pymysql.constants import COMMAND

import app as app_module
from chalicelib.domain.models import Booking, BookingStatus
from infra.local.sqs_poller import pollers_for_app

pytestmark = pytest.mark.timeout(60)
LOCKING_SQL = re.compile(r"FOR\s+UPDATE|LOCK\s+IN\s+SHARE\s+MODE|FOR\s+SHARE|GET_LOCK|LOCK\s+TABLES", re.I)


@pytest.fixture()
def sqs(settings):
    return boto3.client("sqs", endpoint_url=settings.aws_endpoint_url, region_name=settings.aws_region)


def group_of(performance: dict, section_index: int) -> str:
    section_id = performance["sections"][section_index]["section_id"]
    return f"performance-{performance['performance_id']}-section-{section_id}"


def book(services, performance: dict, user_id: str, seat_ids: list[int]) -> Booking:
    booking = services.booking_service.book(
        performance["performance_id"], {"user_id": user_id, "seat_ids": seat_ids}, None
    )
    assert booking.status is BookingStatus.PENDING
    return booking


@pytest.fixture()
def decided(services, monkeypatch) -> list[tuple[str, BookingStatus]]:
    """(booking id, outcome) in the order the consumer decides them: the fifo_partition instance the consumer
    dispatches to (the container's) has its `finish` wrapped."""
    fifo = services.strategies["fifo_partition"]
    real_finish = fifo.finish
    order: list[tuple[str, BookingStatus]] = []

    def recording_finish(message):
        status = real_finish(message)
        order.append((message.booking_id, status))
        return status

    monkeypatch.setattr(fifo, "finish", recording_finish)
    return order


def decide_concurrently(sqs, settings, decided: list, booking_ids: set[str], instances: int = 4) -> None:
    """Run the FIFO queue's consumer as `instances` concurrent Lambda instances until every one of
    `booking_ids` is decided. Only the message groups keep a section's requests from overtaking each other."""
    (poller,) = [
        p
        for p in pollers_for_app(
            app_module,
            sqs,
            function_name_prefix="seat-booking-test",
            concurrency=instances,
            wait_time_seconds=0,
        )
        if p.queue_url.endswith(f"/{settings.fifo_queue_name}")
    ]
    assert poller.concurrency > 1, "several consumer instances at once"
    poller.start()
    try:
        deadline = time.monotonic() + 30
        while not booking_ids <= {booking_id for booking_id, _ in decided}:
            assert time.monotonic() < deadline, "the requests were not all decided"
            time.sleep(0.05)
    finally:
        assert poller.stop()


def receive_all(sqs, queue_url: str, wanted: set[str]) -> dict[str, dict]:
    """Take our messages off the FIFO queue (booking id -> message), then make every received one visible
    again at once, so the drain still delivers them."""
    found: dict[str, dict] = {}
    received: list[dict] = []
    for _ in range(10):
        if wanted <= set(found):
            break
        reply = sqs.receive_message(
            QueueUrl=queue_url,
            MaxNumberOfMessages=10,
            WaitTimeSeconds=1,
            AttributeNames=["All"],
            MessageSystemAttributeNames=["All"],
        )
        for message in reply.get("Messages", []):
            received.append(message)
            booking_id = json.loads(message["Body"]).get("booking_id")
            if booking_id in wanted:
                found[booking_id] = message
    for message in received:
        sqs.change_message_visibility(
            QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
        )
    assert set(found) == wanted, "every request was sent to the FIFO queue"
    return found


@contextmanager
def sql_sent_by_this_process(monkeypatch) -> Iterator[list[str]]:
    """Every SQL text any pymysql connection of this process sends to the server (queries, BEGIN, COMMIT)."""
    statements: list[str] = []
    original = pymysql.connections.Connection._execute_command

    def capturing(self, command, sql):
        if command == COMMAND.COM_QUERY:
            statements.append(sql if isinstance(sql, str) else bytes(sql).decode("utf-8", "replace"))
        return original(self, command, sql)

    monkeypatch.setattr(pymysql.connections.Connection, "_execute_command", capturing)
    try:
        yield statements
    finally:
        monkeypatch.setattr(pymysql.connections.Connection, "_execute_command", original)


@contextmanager
def redis_commands(settings) -> Iterator[list[str]]:
    """Every command Redis executes (MONITOR on a connection of its own) that names a key of this test run."""
    prefix = f"{settings.redis_key_prefix}:"
    marker = uuid.uuid4().hex
    seen: list[str] = []
    started = threading.Event()
    client = redis.Redis.from_url(settings.redis_url, decode_responses=True)

    def watch() -> None:
        with client.monitor() as monitor:
            started.set()
            while True:
                command = monitor.next_command()["command"]
                if f"stop-{marker}" in command:
                    return
                if prefix in command:
                    seen.append(command)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    assert started.wait(5)
    # MONITOR is on once the watcher sees our own marker go by.
    while not any(f"start-{marker}" in c for c in seen):
        client.echo(f"{prefix}start-{marker}")
        threading.Event().wait(0.05)
    try:
        yield seen
    finally:
        client.echo(f"stop-{marker}")
        thread.join(30)
        client.close()
        assert not thread.is_alive(), "the MONITOR watcher did not stop"


# --- order within a group ----------------------------------------------------------------------------------
def test_requests_are_decided_in_send_order_within_each_section(
    services, new_performance, sql, sqs, settings, decided
) -> None:
    """30 requests, sent one after the other, alternating between two sections; in each section every other
    request wants that section's one contested seat, the rest want seats of their own. Four consumer
    instances run at once. Each section's line is decided in exactly the order it was sent: the first request
    for the contested seat gets it, every later one is rejected, every uncontested request is confirmed."""
    performance = new_performance(strategy="fifo_partition", rows=2, seats_per_row=10, sections=2)
    pid = performance["performance_id"]
    firsts = [section["first_seat_id"] for section in performance["sections"]]
    sent: dict[int, list[Booking]] = {0: [], 1: []}
    contested: dict[int, list[str]] = {0: [], 1: []}
    for i in range(30):
        section, k = i % 2, i // 2
        seat = firsts[section] if k % 2 == 0 else firsts[section] + 1 + k
        booking = book(services, performance, f"user-{i}", [seat])
        sent[section].append(booking)
        if seat == firsts[section]:
            contested[section].append(booking.booking_id)

    ours = {b.booking_id: section for section, bookings in sent.items() for b in bookings}
    decide_concurrently(sqs, settings, decided, set(ours))

    decided_ours = [(booking_id, status) for booking_id, status in decided if booking_id in ours]
    assert len(decided_ours) == 30, "every request was decided exactly once"
    for section in (0, 1):
        in_line = [booking_id for booking_id, _ in decided_ours if ours[booking_id] == section]
        assert in_line == [b.booking_id for b in sent[section]], f"section {section}: decided out of order"

    outcome = dict(decided_ours)
    stored = dict(sql("SELECT booking_id, status FROM bookings WHERE performance_id = %s", pid))
    assert stored == {booking_id: status.value for booking_id, status in outcome.items()}
    for section in (0, 1):
        winner, *losers = contested[section]
        assert outcome[winner] is BookingStatus.CONFIRMED, "the first in line gets the contested seat"
        assert [outcome[b] for b in losers] == [BookingStatus.REJECTED] * 7
        others = [b.booking_id for b in sent[section] if b.booking_id not in contested[section]]
        assert [outcome[b] for b in others] == [BookingStatus.CONFIRMED] * 7
        assert sql(
            "SELECT booking_id FROM booking_seats WHERE seat_id = %s AND active = 1", firsts[section]
        ) == [(winner,)]
        assert services.seat_store.seat_states(pid)[firsts[section]] == f"B:{winner}"
    assert (
        services.booking_service.get(contested[0][1]).reason
        == f"seat(s) {[firsts[0]]} were taken earlier in line"
    )


# --- no locks ----------------------------------------------------------------------------------------------
def test_no_lock_is_taken_in_mysql_or_redis(
    services, new_performance, drain, sql, settings, monkeypatch
) -> None:
    """From the requests to the end of the drain, no SQL statement of this process locks a seat (FOR
    UPDATE, LOCK IN SHARE MODE, GET_LOCK, ...) and no Redis command touches a lease key (`…:lock:…`): the
    order of the line alone excludes the races. The one lock taken is each booking's own row while it is
    settled (the compare-and-set that a cancel or the reconcile job may race), which no other request of
    the line ever waits for."""
    performance = new_performance(strategy="fifo_partition", rows=1, seats_per_row=10, sections=2)
    pid = performance["performance_id"]
    first, second = (section["first_seat_id"] for section in performance["sections"])
    requests = [
        [first],
        [first],
        [first + 1, first + 2],
        [first + 2],
        [second],
        [first + 3, second],
        [second],
    ]

    with redis_commands(settings) as commands, sql_sent_by_this_process(monkeypatch) as statements:
        bookings = [book(services, performance, f"user-{i}", seats) for i, seats in enumerate(requests)]
        drain()

    final = dict(sql("SELECT booking_id, status FROM bookings WHERE performance_id = %s", pid))
    assert sorted(final[b.booking_id] for b in bookings) == ["CONFIRMED"] * 3 + ["REJECTED"] * 4
    # The observation points saw the consumer at work ...
    assert any(s.startswith("INSERT INTO bookings") for s in statements)
    assert any(s.startswith("SELECT bs.seat_id, bs.booking_id") for s in statements)
    assert any(f"{{p{pid}}}:seats" in c for c in commands)
    # ... and it never locked a seat.
    own_row = re.compile(r"^SELECT .* FROM bookings WHERE booking_id = .* FOR UPDATE$")
    assert [s for s in statements if LOCKING_SQL.search(s) and not own_row.match(s)] == []
    assert [c for c in commands if ":lock:" in c] == []
    assert list(services.redis.scan_iter(match=f"{settings.redis_key_prefix}:*:lock:*")) == []


# --- what is sent ------------------------------------------------------------------------------------------
def test_the_message_waits_in_its_sections_line_deduplicated_by_booking_id(
    services, new_performance, drain, sqs, queues
) -> None:
    """The message actually on the FIFO queue: MessageGroupId = performance-<pid>-section-<sid>,
    MessageDeduplicationId = the booking id, and the body is the booking request."""
    performance = new_performance(strategy="fifo_partition", rows=1, seats_per_row=5, sections=2)
    first, second = (section["first_seat_id"] for section in performance["sections"])
    in_first = book(services, performance, "ann", [first + 1, first])
    in_second = book(services, performance, "bob", [second + 2])

    messages = receive_all(sqs, queues["fifo"].queue_url, {in_first.booking_id, in_second.booking_id})

    for booking, section in ((in_first, 0), (in_second, 1)):
        attributes = messages[booking.booking_id]["Attributes"]
        assert attributes["MessageGroupId"] == group_of(performance, section)
        assert attributes["MessageDeduplicationId"] == booking.booking_id
        body = json.loads(messages[booking.booking_id]["Body"])
        assert body["seat_ids"] == list(booking.seat_ids) and body["strategy"] == "fifo_partition"

    drain()  # the messages made visible again are still decided normally
    for booking in (in_first, in_second):
        assert services.booking_service.get(booking.booking_id).status is BookingStatus.CONFIRMED


def test_a_booking_across_sections_waits_in_its_lowest_seats_line(
    services, new_performance, drain, sqs, queues, sql
) -> None:
    """A booking with seats in two sections goes to the line of its lowest seat's section, whatever order
    the seats were given in. Another booking that shares a seat but starts in the other section stands in a
    different line; the unique guard still lets exactly one of them have the seat."""
    performance = new_performance(strategy="fifo_partition", rows=1, seats_per_row=5, sections=2)
    pid = performance["performance_id"]
    first, second = (section["first_seat_id"] for section in performance["sections"])
    spanning = book(services, performance, "ann", [second, first + 4])  # highest-first on purpose
    rival = book(services, performance, "bob", [second])

    messages = receive_all(sqs, queues["fifo"].queue_url, {spanning.booking_id, rival.booking_id})
    assert messages[spanning.booking_id]["Attributes"]["MessageGroupId"] == group_of(performance, 0)
    assert messages[rival.booking_id]["Attributes"]["MessageGroupId"] == group_of(performance, 1)

    drain()

    statuses = {b.booking_id: services.booking_service.get(b.booking_id).status for b in (spanning, rival)}
    assert sorted(s.value for s in statuses.values()) == ["CONFIRMED", "REJECTED"]
    winner = next(b for b, s in statuses.items() if s is BookingStatus.CONFIRMED)
    assert sql("SELECT booking_id FROM booking_seats WHERE seat_id = %s AND active = 1", second) == [
        (winner,)
    ]
    states = services.seat_store.seat_states(pid)
    held = {seat: state for seat, state in states.items() if state != "0"}
    expected = spanning.seat_ids if winner == spanning.booking_id else rival.seat_ids
    assert held == {seat: f"B:{winner}" for seat in expected}, "a rejected booking holds nothing"
