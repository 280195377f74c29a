"""Logs and metrics (issue 14, item 3), without servers: the handlers are called as Lambda calls them, over
in-memory stand-ins for the container. A log line is JSON with the invocation's correlation id (API
Gateway's request id; per queue or stream record, its booking id), and each booking outcome is counted under
its name with its strategy."""

from __future__ import annotations

import base64
import dataclasses
import io
import json
import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import app as app_module
from chalicelib.adapters import observability
from chalicelib.adapters.observability import NAMESPACE, EmfMetrics, correlated
from chalicelib.adapters.tokens import Tokens
from chalicelib.config import Settings
from chalicelib.domain.errors import SeatUnavailable, ServiceUnavailable
from chalicelib.domain.messages import BookingRequested, LedgerEntry, LedgerOutcome
from chalicelib.domain.models import Booking, BookingRequest, BookingStatus, Performance, Section
from chalicelib.entrypoints.kinesis_batch import PersisterBatchHandler
from chalicelib.entrypoints.sqs_batch import BookingBatchHandler
from chalicelib.services.booking import BookingService
from chalicelib.services.booking_events import BookingEventConsumer, PermanentFailure, TransientFailure
from chalicelib.services.metrics import BookingMetric
from chalicelib.services.rate_limits import BookingWriteLimits, Rate
from tests.support.clock import FakeClock
from tests.support.metrics import RecordingMetrics

BOOKING_ID = "01JF3Z5W6X7Y8Z9A0B1C2D3E4F"
PERFORMANCE = Performance(
    performance_id=7,
    event_id=1,
    starts_at="2026-12-24T19:30:00+09:00",
    strategy="db_lock",
    sections=(Section(1, 7, "Stalls", 50_000, rows=2, seats_per_row=5, first_seat_id=101),),
)
MAX_RECEIVES = 3


# --- stand-ins -------------------------------------------------------------------------------------------
class Catalogue:
    def performance(self, performance_id: int) -> Performance:
        return PERFORMANCE


@dataclasses.dataclass
class Deciding:
    """A strategy that answers what it is told to: a status, or an error to raise."""

    name: str
    answer: BookingStatus | Exception

    def book(self, request: BookingRequest) -> Booking:
        if isinstance(self.answer, Exception):
            raise self.answer
        return Booking.from_request(request, self.answer)


@dataclasses.dataclass
class Finishing:
    """An asynchronous strategy's consumer side: finishes with `outcome` (or raises it); a give-up FAILs."""

    name: str
    outcome: BookingStatus | Exception

    def finish(self, message: BookingRequested) -> BookingStatus:
        if isinstance(self.outcome, Exception):
            raise self.outcome
        return self.outcome

    def give_up(self, booking_id: str, reason: str, message: BookingRequested | None) -> BookingStatus:
        return BookingStatus.FAILED


class Bookings:
    def __init__(self) -> None:
        self.reconcile_log: list[Any] = []

    def log_reconcile(self, entry: Any) -> None:
        self.reconcile_log.append(entry)


class Queue:
    def retry_after(self, receipt_handle: str, seconds: int) -> None:
        pass


class Context:
    function_name = "seat-booking-test"
    aws_request_id = "lambda-invocation-1"

    @staticmethod
    def get_remaining_time_in_millis() -> int:
        return 30_000


def booking_service(strategy: Deciding, metrics: RecordingMetrics) -> BookingService:
    return BookingService(
        Catalogue(),  # type: ignore[arg-type]
        {strategy.name: strategy},  # type: ignore[dict-item]
        bookings=None,  # type: ignore[arg-type]  (a booking without an Idempotency-Key reads nothing back)
        remembered=None,  # type: ignore[arg-type]
        idempotency=None,  # type: ignore[arg-type]
        max_seats_per_booking=4,
        metrics=metrics,
    )


def consumer(finishing: Finishing, metrics: RecordingMetrics) -> BookingEventConsumer:
    return BookingEventConsumer({finishing.name: finishing}, Bookings(), MAX_RECEIVES, metrics)  # type: ignore[arg-type]


def message(strategy: str = "redis_async") -> str:
    return BookingRequested(BOOKING_ID, PERFORMANCE.performance_id, "ann", (101, 102), strategy).to_json()


def sqs_event(body: str, receive_count: int = 1) -> dict:
    return {
        "Records": [
            {
                "messageId": "m-1",
                "receiptHandle": "handle-1",
                "body": body,
                "attributes": {"ApproximateReceiveCount": str(receive_count)},
                "messageAttributes": {},
                "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:booking-events-test",
                "awsRegion": "us-east-1",
            }
        ]
    }


# The users' tokens of these tests (the app verifies them: IDENTITY_PROVIDER=local).
TOKENS = Tokens(app_module.settings.token_signing_key, time.time, 3600, 3600)


def api_gateway_event(performance_id: int, body: dict, request_id: str) -> dict:
    """What API Gateway's proxy integration hands Lambda for POST /performances/{id}/bookings."""
    resource = "/performances/{performance_id}/bookings"
    token = TOKENS.user_token(body["user_id"])["token"]
    return {
        "resource": resource,
        "path": f"/performances/{performance_id}/bookings",
        "httpMethod": "POST",
        "headers": {"content-type": "application/json", "authorization": f"Bearer {token}"},
        "multiValueQueryStringParameters": None,
        "pathParameters": {"performance_id": str(performance_id)},
        "stageVariables": None,
        "requestContext": {"resourcePath": resource, "httpMethod": "POST", "requestId": request_id},
        "body": json.dumps(body),
        "isBase64Encoded": False,
    }


# --- fixtures: what the app writes, and the container it asks -------------------------------------------
@pytest.fixture
def logged() -> Iterator[Callable[[], list[dict]]]:
    """The JSON lines the app's log handler has written since the test began, parsed (each must be JSON)."""
    stream = io.StringIO()
    handler = observability.logger.registered_handler
    previous = handler.setStream(stream)
    try:
        yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    finally:
        handler.setStream(previous)


@pytest.fixture
def emf(monkeypatch: pytest.MonkeyPatch) -> tuple[EmfMetrics, list[str]]:
    """The process's metrics replaced by one that keeps its EMF lines, flushing every invocation (Lambda)."""
    written: list[str] = []
    metrics = EmfMetrics(flush_every_seconds=0, write=written.append)
    monkeypatch.setattr(observability, "metrics", metrics)
    return metrics, written


def serve_with(monkeypatch: pytest.MonkeyPatch, **parts: Any) -> None:
    unlimited = BookingWriteLimits(None, per_user=Rate(0, 1), per_address=Rate(0, 1))  # type: ignore[arg-type]
    container = type("Container", (), {"tokens": TOKENS, "booking_limits": unlimited, **parts})
    monkeypatch.setattr(app_module, "container", lambda: container)


def counts_of(lines: list[dict]) -> dict[tuple[str, str], float]:
    """{(metric, strategy): value} of EMF lines, checked against the format CloudWatch reads."""
    counts = {}
    for line in lines:
        [directive] = line["_aws"]["CloudWatchMetrics"]
        assert directive["Namespace"] == NAMESPACE
        assert ["strategy", "service"] in directive["Dimensions"]
        for definition in directive["Metrics"]:
            assert definition["Unit"] == "Count"
            counts[(definition["Name"], line["strategy"])] = sum(line[definition["Name"]])
    return counts


# --- logs -------------------------------------------------------------------------------------------------
def test_an_http_request_logs_json_with_api_gateways_request_id(monkeypatch, logged, emf) -> None:
    class Broken:
        def book(self, *args: Any) -> Booking:
            raise RuntimeError("a bug")

    serve_with(monkeypatch, booking_service=Broken())
    event = api_gateway_event(7, {"user_id": "ann", "seat_ids": [101]}, request_id="apigw-req-42")

    response = app_module.app(event, Context())

    assert response["statusCode"] == 500
    [line] = logged()
    assert line["level"] == "ERROR"
    assert line["correlation_id"] == "apigw-req-42"
    assert line["service"] == "seat-booking"
    assert "unhandled error in create_booking" in line["message"]
    assert "RuntimeError: a bug" in line["exception"]


def test_a_queue_record_logs_json_with_its_booking_id(monkeypatch, logged, emf) -> None:
    settings = Settings(max_receive_count=MAX_RECEIVES)
    failing = consumer(Finishing("redis_async", RuntimeError("MySQL away")), RecordingMetrics())
    serve_with(monkeypatch, booking_batch_handler=BookingBatchHandler(failing, Queue(), settings))  # type: ignore[arg-type]

    answer = app_module.on_booking_event(sqs_event(message(), receive_count=1), Context())

    assert answer == {"batchItemFailures": [{"itemIdentifier": "m-1"}]}
    ours = [line for line in logged() if line.get("name") == "chalicelib.services.booking_events"]
    assert [(line["level"], line["correlation_id"]) for line in ours] == [("WARNING", BOOKING_ID)]


def test_a_records_correlation_id_gives_way_to_the_invocations_again(logged) -> None:
    log = logging.getLogger("chalicelib.entrypoints.test")
    with correlated("invocation-1"):
        with correlated(BOOKING_ID):
            log.warning("the record")
        with correlated(None):  # a record whose booking cannot be read keeps the invocation's
            log.warning("an unreadable record")
        log.warning("the batch")
    log.warning("outside any invocation")

    assert [(line["message"], line.get("correlation_id")) for line in logged()] == [
        ("the record", BOOKING_ID),
        ("an unreadable record", "invocation-1"),
        ("the batch", "invocation-1"),
        ("outside any invocation", None),
    ]


def test_nothing_is_logged_at_info_for_a_booking(monkeypatch, logged, emf) -> None:
    serve_with(
        monkeypatch,
        booking_service=booking_service(Deciding("db_lock", BookingStatus.CONFIRMED), RecordingMetrics()),
    )
    event = api_gateway_event(7, {"user_id": "ann", "seat_ids": [101]}, request_id="apigw-req-43")

    assert app_module.app(event, Context())["statusCode"] == 201
    assert observability.logger.log_level == logging.INFO
    assert logged() == []


# --- metrics: what each outcome counts ------------------------------------------------------------------
@pytest.mark.parametrize(
    ("answer", "counted"),
    [
        (
            BookingStatus.CONFIRMED,
            [(BookingMetric.ACCEPTED, "db_lock"), (BookingMetric.CONFIRMED, "db_lock")],
        ),
        (BookingStatus.PENDING, [(BookingMetric.ACCEPTED, "db_lock")]),
        (SeatUnavailable([101], holders={}), [(BookingMetric.REFUSED, "db_lock")]),
        (ServiceUnavailable("Redis away"), [(BookingMetric.SERVICE_UNAVAILABLE, "db_lock")]),
    ],
    ids=["confirmed at once", "accepted, pending", "refused (409)", "unavailable (503)"],
)
def test_a_booking_request_counts_its_outcome_with_its_strategy(answer, counted) -> None:
    metrics = RecordingMetrics()
    service = booking_service(Deciding("db_lock", answer), metrics)
    try:
        service.book(PERFORMANCE.performance_id, {"user_id": "ann", "seat_ids": [101]}, None)
    except (SeatUnavailable, ServiceUnavailable) as error:
        assert error is answer
    assert metrics.counted == counted


@pytest.mark.parametrize(
    ("outcome", "counted"),
    [
        (BookingStatus.CONFIRMED, [(BookingMetric.CONFIRMED, "fifo_partition")]),
        (BookingStatus.REJECTED, [(BookingMetric.REJECTED, "fifo_partition")]),
        (BookingStatus.CANCELLED, []),  # cancelled before its turn: the cancel ended it
    ],
)
def test_a_consumer_counts_how_it_settled_a_booking(outcome, counted) -> None:
    metrics = RecordingMetrics()
    consumer(Finishing("fifo_partition", outcome), metrics).handle(message("fifo_partition"), 1, "m-1")
    assert metrics.counted == counted


def test_a_failure_before_the_last_delivery_counts_nothing() -> None:
    metrics = RecordingMetrics()
    with pytest.raises(TransientFailure):
        consumer(Finishing("redis_async", RuntimeError("MySQL away")), metrics).handle(message(), 1, "m-1")
    assert metrics.counted == []


def test_giving_up_at_the_last_delivery_counts_the_booking_failed_and_its_message_dead_lettered() -> None:
    metrics = RecordingMetrics()
    with pytest.raises(PermanentFailure):
        consumer(Finishing("redis_async", RuntimeError("MySQL away")), metrics).handle(
            message(), MAX_RECEIVES, "m-1"
        )
    assert metrics.counted == [
        (BookingMetric.FAILED, "redis_async"),
        (BookingMetric.DEAD_LETTERED, "redis_async"),
    ]


def test_a_poison_message_is_counted_dead_lettered_at_its_last_delivery_only() -> None:
    metrics = RecordingMetrics()
    poison = consumer(Finishing("redis_async", BookingStatus.CONFIRMED), metrics)
    for receive in range(1, MAX_RECEIVES + 1):
        with pytest.raises(PermanentFailure):
            poison.handle("not json", receive, "m-1")
    assert metrics.counted == [(BookingMetric.DEAD_LETTERED, "unknown")]


def test_the_stream_persister_counts_the_ledgers_decisions_as_they_become_final() -> None:
    class Persister:
        name = "stream_state"

        def persist(self, entry: LedgerEntry) -> BookingStatus | None:
            return {"CONFIRMED": BookingStatus.CONFIRMED, "REJECTED": BookingStatus.REJECTED}[entry.outcome]

    def record(number: int, outcome: str) -> dict:
        entry = LedgerEntry(f"{BOOKING_ID[:-1]}{number}", 7, "ann", (101,), outcome)
        return {
            "kinesis": {
                "data": base64.b64encode(entry.to_json().encode()).decode(),
                "sequenceNumber": str(number),
                "partitionKey": "7:1",
            },
            "eventSource": "aws:kinesis",
            "eventID": f"shardId-000000000000:{number}",
        }

    metrics = RecordingMetrics()
    handler = PersisterBatchHandler(Persister(), metrics)  # type: ignore[arg-type]
    event = {"Records": [record(1, LedgerOutcome.CONFIRMED), record(2, LedgerOutcome.REJECTED)]}

    assert handler(event, Context()) == {"batchItemFailures": []}
    assert metrics.counted == [
        (BookingMetric.CONFIRMED, "stream_state"),
        (BookingMetric.REJECTED, "stream_state"),
    ]


# --- metrics: the EMF that leaves ---------------------------------------------------------------------
def test_an_invocation_leaves_its_counts_as_emf_before_it_returns(monkeypatch, emf) -> None:
    metrics, written = emf
    service = booking_service(Deciding("db_lock", BookingStatus.CONFIRMED), metrics)  # type: ignore[arg-type]
    serve_with(monkeypatch, booking_service=service)

    for number, request_id in enumerate(("apigw-1", "apigw-2"), start=1):
        event = api_gateway_event(7, {"user_id": "ann", "seat_ids": [101]}, request_id)
        assert app_module.app(event, Context())["statusCode"] == 201
        # Its own line, already written: Lambda may freeze the process as soon as the handler returns.
        assert len(written) == number
        assert counts_of([json.loads(written[-1])]) == {
            ("BookingAccepted", "db_lock"): 1,
            ("BookingConfirmed", "db_lock"): 1,
        }


def test_counts_leave_as_one_emf_line_per_strategy() -> None:
    written: list[str] = []
    metrics = EmfMetrics(write=written.append)
    for metric, strategy in [
        (BookingMetric.ACCEPTED, "redis_async"),
        (BookingMetric.ACCEPTED, "redis_async"),
        (BookingMetric.REFUSED, "redis_async"),
        (BookingMetric.ACCEPTED, "db_lock"),
    ]:
        metrics.count(metric, strategy)

    metrics.flush()

    lines = [json.loads(line) for line in written]
    assert sorted(line["strategy"] for line in lines) == ["db_lock", "redis_async"]
    assert counts_of(lines) == {
        ("BookingAccepted", "redis_async"): 2,
        ("BookingRefused", "redis_async"): 1,
        ("BookingAccepted", "db_lock"): 1,
    }
    metrics.flush()
    assert len(written) == 2, "flushed counts are gone; nothing new, nothing written"


def test_a_long_running_process_batches_its_counts_between_flushes() -> None:
    clock = FakeClock()
    written: list[str] = []
    metrics = EmfMetrics(flush_every_seconds=10, write=written.append, clock=clock)
    metrics.count(BookingMetric.ACCEPTED, "redis_async")
    metrics.flush()
    clock.advance(9)
    metrics.count(BookingMetric.ACCEPTED, "redis_async")
    metrics.flush()
    assert written == []

    clock.advance(1)
    metrics.flush()
    assert counts_of([json.loads(line) for line in written]) == {("BookingAccepted", "redis_async"): 2}


def test_metrics_that_cannot_be_written_never_fail_the_request_that_counted_them(logged) -> None:
    def broken_stdout(line: str) -> None:
        raise OSError("stdout closed")

    metrics = EmfMetrics(write=broken_stdout)
    metrics.count(BookingMetric.ACCEPTED, "redis_async")

    metrics.flush()

    [line] = logged()
    assert line["level"] == "ERROR"
    assert "the metrics of redis_async are lost" in line["message"]
    assert "OSError: stdout closed" in line["exception"]
