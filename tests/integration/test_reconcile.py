"""Reconcile on real MariaDB and Redis: every kind of drift is made by hand, the job repairs it so that Redis
says what MySQL says seat by seat, logs each repair once, leaves live traffic alone, and runs the same way
from the CLI's use case, from the app's scheduled handler and from the local scheduler."""

from __future__ import annotations

import time
from collections import Counter
from datetime import UTC, datetime

import pytest

import app as app_module
from chalicelib.adapters.mysql import CatalogueRepository
from chalicelib.adapters.mysql_reconcile import ReconcileRepository
from chalicelib.adapters.redis_audit import RedisSeatMapAudit
from chalicelib.domain.booking_ids import mint
from chalicelib.domain.messages import BookingRequested
from chalicelib.domain.models import Booking, BookingStatus
from chalicelib.domain.seat_holds import BookingRecord
from chalicelib.services.reconcile import (
    LEDGER_RELEASES_RESENT,
    SEATS_BOOKED,
    SEATS_RELEASED,
    STALE_HOLDS_FAILED,
    Reconciler,
)
from infra import reconcile as reconcile_command
from infra.local import scheduler
from infra.local.sqs_poller import LambdaContext
from tests.integration.test_redis_async import lambda_event
from tests.support.waiting import wait_for

pytestmark = pytest.mark.timeout(120)


def accepted_seconds_ago(seconds: float, performance_id: int) -> str:
    """A booking id as the service makes them (domain/booking_ids.py), accepted `seconds` ago."""
    return mint(performance_id, now_ms=round((time.time() - seconds) * 1000))


def seats_of(new_performance, strategy: str = "redis_async", count: int = 10) -> tuple[int, list[int]]:
    performance = new_performance(strategy=strategy, rows=1, seats_per_row=count)
    first = performance["sections"][0]["first_seat_id"]
    return performance["performance_id"], list(range(first, first + count))


def store(services, booking_id: str, pid: int, seats: tuple[int, ...], status: BookingStatus) -> None:
    services.bookings.insert(Booking(booking_id, pid, "ann", seats, status, "redis_async"))


def hold(services, booking_id: str, pid: int, seats: tuple[int, ...]) -> None:
    record = BookingRecord(booking_id, pid, "ann", seats, "redis_async", BookingStatus.PENDING)
    services.seat_store.reserve(record)


def show(services, pid: int, states: dict[int, str]) -> None:
    """Make Redis say something else than it should (as a lost or stray write would)."""
    services.redis.hset(services.seat_store.seats_key(pid), mapping={str(s): v for s, v in states.items()})


def mysql_view(sql, pid: int, seats: list[int]) -> dict[int, str]:
    """What the seat map must show according to MySQL: B:<booking> for CONFIRMED holders, else free."""
    booked = dict(
        sql(
            "SELECT bs.seat_id, CONCAT('B:', b.booking_id) FROM booking_seats bs"
            " JOIN bookings b ON b.booking_id = bs.booking_id"
            " WHERE bs.performance_id = %s AND bs.active = 1 AND b.status = 'CONFIRMED'",
            pid,
        )
    )
    return {seat: booked.get(seat, "0") for seat in seats}


def log_rows(sql, pid: int) -> list[tuple[str, str]]:
    return sql(
        "SELECT action, booking_id FROM reconcile_log WHERE performance_id = %s ORDER BY action, booking_id",
        pid,
    )


def context(name: str = "seat-booking-test-reconcile_seat_maps") -> LambdaContext:
    return LambdaContext(
        function_name=name,
        invoked_function_arn=f"arn:aws:lambda:us-east-1:123456789012:function:{name}",
        memory_limit_in_mb=128,
        log_group_name=f"/aws/lambda/{name}",
        log_stream_name="2026/01/01/[$LATEST]test",
        timeout_seconds=60,
    )


def test_each_drift_is_repaired_seat_by_seat_and_logged_once(services, new_performance, sql, capsys) -> None:
    pid, s = seats_of(new_performance)
    confirmed, cancelled, failed, rejected, elsewhere, stray = (
        accepted_seconds_ago(120, pid) for _ in range(6)
    )
    stale, fresh = accepted_seconds_ago(3600, pid), accepted_seconds_ago(5, pid)
    store(services, confirmed, pid, (s[0], s[1]), BookingStatus.CONFIRMED)
    store(services, cancelled, pid, (s[2],), BookingStatus.CANCELLED)
    store(services, failed, pid, (s[3],), BookingStatus.FAILED)
    store(services, rejected, pid, (s[4],), BookingStatus.REJECTED)
    store(services, elsewhere, pid, (s[6],), BookingStatus.CONFIRMED)
    hold(services, stale, pid, (s[7],))  # accepted an hour ago; MySQL never heard of it
    hold(services, fresh, pid, (s[8],))  # accepted a moment ago: its message may well be in the queue
    show(
        services,
        pid,
        {
            s[0]: "0",  # CONFIRMED in MySQL, free in Redis
            s[1]: f"H:{stray}",  # CONFIRMED in MySQL, someone else's hold in Redis
            s[2]: f"B:{cancelled}",
            s[3]: f"H:{failed}",
            s[4]: f"H:{rejected}",
            s[5]: f"B:{elsewhere}",  # that booking holds s[6] only
            s[6]: f"B:{elsewhere}",
        },
    )
    drifted = services.seat_store.seat_states(pid)
    expected_repairs = Counter({SEATS_BOOKED: 2, SEATS_RELEASED: 4, STALE_HOLDS_FAILED: 1})

    # A dry run reports the same repairs and changes nothing anywhere.
    assert reconcile_command.main(["--performance", str(pid), "--dry-run"]) == 0
    assert "dry run: nothing changed" in capsys.readouterr().out
    dry = services.reconciler.run(pid, dry_run=True)
    assert dry.repairs == expected_repairs and dry.holds_in_flight == 1
    assert services.seat_store.seat_states(pid) == drifted
    assert log_rows(sql, pid) == []
    assert sql("SELECT COUNT(*) FROM bookings WHERE booking_id = %s", stale) == [(0,)]

    summary = services.reconciler.run(pid)

    assert summary.repairs == expected_repairs
    assert (summary.holds_in_flight, summary.changed_meanwhile, summary.errors) == (1, 0, 0)
    expected = mysql_view(sql, pid, s)
    expected[s[8]] = f"H:{fresh}"  # the one seat MySQL cannot speak for yet: a booking still in flight
    assert services.seat_store.seat_states(pid) == expected
    assert expected[s[0]] == expected[s[1]] == f"B:{confirmed}" and expected[s[7]] == "0"
    assert sql("SELECT status FROM bookings WHERE booking_id = %s", stale) == [("FAILED",)]
    assert services.seat_store.read_record(stale).status is BookingStatus.FAILED
    logged = log_rows(sql, pid)
    assert logged == sorted(
        [
            ("booking_failed", stale),
            ("reconcile_seat_booked", confirmed),
            *(("reconcile_seat_released", b) for b in (cancelled, failed, rejected, elsewhere)),
        ]
    )

    # The stale booking's message turns up after all: the FAILED row and record keep it from confirming.
    late = BookingRequested(stale, pid, "ann", (s[7],), "redis_async").to_json()
    assert app_module.on_booking_event(lambda_event(late), context("late")) == {"batchItemFailures": []}
    assert sql("SELECT status FROM bookings WHERE booking_id = %s", stale) == [("FAILED",)]
    assert services.seat_store.seat_states(pid)[s[7]] == "0"

    again = services.reconciler.run(pid)
    assert again.total_repairs == 0 and again.holds_in_flight == 1 and again.errors == 0
    assert log_rows(sql, pid) == logged


class TrafficAfterComparison:
    """The reconcile job's MySQL, with live traffic arriving right after the comparison has read it."""

    def __init__(self, inner: ReconcileRepository, traffic) -> None:
        self._inner = inner
        self._traffic = traffic

    def statuses(self, booking_ids):
        found = self._inner.statuses(booking_ids)
        traffic, self._traffic = self._traffic, lambda: None
        traffic()
        return found

    def __getattr__(self, name: str):
        return getattr(self._inner, name)


def reconciler_over(services, settings, bookings, hold_deadline_seconds: float | None = None) -> Reconciler:
    """A reconciler as bootstrap builds it, over the given MySQL repository (and hold deadline)."""
    return Reconciler(
        bookings,
        CatalogueRepository(services.db),
        RedisSeatMapAudit(services.redis, services.seat_store, settings.redis_key_prefix),
        services.seat_store,
        compensators={name: services.strategies[name] for name in ("redis_async", "fifo_partition")},
        ledger=services.strategies["stream_state"],
        hold_deadline_seconds=hold_deadline_seconds or settings.pending_hold_deadline_seconds,
        queue_retry_window_seconds=settings.queue_retry_window_seconds(),
        activity_window_seconds=settings.reconcile_activity_window_seconds,
    )


def test_live_traffic_between_comparison_and_repair_is_not_undone(
    services, new_performance, sql, settings
) -> None:
    pid, s = seats_of(new_performance, count=2)
    booked, late = accepted_seconds_ago(60, pid), accepted_seconds_ago(3600, pid)
    store(services, booked, pid, (s[0],), BookingStatus.CONFIRMED)
    show(services, pid, {s[0]: "0"})  # drift: it should show B:booked ...
    hold(services, late, pid, (s[1],))  # ... and this hold looks long abandoned

    def live_traffic() -> None:
        # ... but the user cancels, and the old hold's journal write lands (late) and its consumer confirms
        # it, before any repair.
        services.booking_service.cancel(booked, "ann")
        store(services, late, pid, (s[1],), BookingStatus.PENDING)
        message = BookingRequested(late, pid, "ann", (s[1],), "redis_async").to_json()
        assert app_module.on_booking_event(lambda_event(message), context("late")) == {
            "batchItemFailures": []
        }

    summary = reconciler_over(
        services, settings, TrafficAfterComparison(ReconcileRepository(services.db), live_traffic)
    ).run(pid)

    assert summary.total_repairs == 0 and summary.changed_meanwhile == 2 and summary.errors == 0
    statuses = dict(sql("SELECT booking_id, status FROM bookings WHERE performance_id = %s", pid))
    assert statuses == {booked: "CANCELLED", late: "CONFIRMED"}
    assert services.seat_store.seat_states(pid) == {s[0]: "0", s[1]: f"B:{late}"}
    assert log_rows(sql, pid) == []


def test_the_hold_deadline_always_outlasts_the_queue_retry_window(services, settings) -> None:
    window = settings.queue_retry_window_seconds()
    # Each of MAX_RECEIVE_COUNT deliveries: the visibility timeout, then the backoff 1 s, 2 s, 4 s ...
    assert window == sum(settings.queue_visibility_timeout_seconds + 2**n for n in range(3)) == 97
    assert services.reconciler.hold_deadline_seconds == settings.pending_hold_deadline_seconds == 900
    too_short = reconciler_over(services, settings, services.bookings, hold_deadline_seconds=30)
    assert too_short.hold_deadline_seconds > window


def test_a_ledger_release_that_never_left_is_resent(
    services, new_performance, drain, sql, monkeypatch
) -> None:
    pid, (seat,) = seats_of(new_performance, strategy="stream_state", count=1)
    first = services.booking_service.book(pid, {"user_id": "ann", "seat_ids": [seat]}, None)
    drain()
    assert services.booking_service.get(first.booking_id).status is BookingStatus.CONFIRMED
    assert services.ledger.holder(pid, seat) == first.booking_id

    stream_state = services.strategies["stream_state"]
    with monkeypatch.context() as patch:

        def stream_down(booking) -> None:
            raise ConnectionError("the request stream is unreachable")

        patch.setattr(stream_state, "send_ledger_release", stream_down)
        services.booking_service.cancel(first.booking_id, "ann")
    assert log_rows(sql, pid) == [("ledger_release_pending", first.booking_id)]
    assert services.ledger.holder(pid, seat) == first.booking_id, "the ledger would refuse the seat forever"

    assert services.reconciler.run(pid, dry_run=True).repairs == Counter({LEDGER_RELEASES_RESENT: 1})
    summary = services.reconciler.run(pid)
    assert summary.repairs == Counter({LEDGER_RELEASES_RESENT: 1}) and summary.errors == 0
    drain()
    assert services.ledger.holder(pid, seat) is None

    second = services.booking_service.book(pid, {"user_id": "bob", "seat_ids": [seat]}, None)
    drain()
    assert services.booking_service.get(second.booking_id).status is BookingStatus.CONFIRMED
    assert services.reconciler.run(pid).total_repairs == 0
    assert log_rows(sql, pid) == [
        ("ledger_release_pending", first.booking_id),
        ("ledger_release_resent", first.booking_id),
    ]


def test_the_scheduled_handler_and_the_local_scheduler_repair_the_same_way(
    services, new_performance, sql, settings
) -> None:
    pid, s = seats_of(new_performance, count=2)
    first, second = accepted_seconds_ago(60, pid), accepted_seconds_ago(60, pid)
    store(services, first, pid, (s[0],), BookingStatus.CONFIRMED)
    store(services, second, pid, (s[1],), BookingStatus.CONFIRMED)
    show(services, pid, {s[0]: "0", s[1]: f"B:{second}"})

    # Through the app, as EventBridge invokes the deployed function: a full run over recent activity.
    event = scheduler.scheduled_event(
        "arn:aws:events:us-east-1:123456789012:rule/reconcile", "us-east-1", "123456789012", datetime.now(UTC)
    )
    result = app_module.reconcile_seat_maps(event, context())
    assert result["repairs"][SEATS_BOOKED] >= 1 and result["errors"] == 0 and not result["dry_run"]
    assert services.seat_store.seat_states(pid) == mysql_view(sql, pid, s)

    # The local scheduler (what the worker runs) fires the same handler at its rate, here 3000x faster.
    show(services, pid, {s[1]: "0"})
    schedules = scheduler.schedules_for_app(
        app_module, function_name_prefix="seat-booking-test", region=settings.aws_region, speedup=3000
    )
    (schedule,) = [s for s in schedules if s.function_name == "seat-booking-test-reconcile_seat_maps"]
    assert schedule.period_seconds == pytest.approx(0.1)
    schedule.start()
    try:
        wait_for(lambda: services.seat_store.seat_states(pid)[s[1]] == f"B:{second}", 20)
    finally:
        assert schedule.stop(timeout=30)
    assert schedule.invocations >= 1 and schedule.failures == 0
    assert schedule.last_result["errors"] == 0
    assert services.seat_store.seat_states(pid) == mysql_view(sql, pid, s)
    assert [action for action, _ in log_rows(sql, pid)] == ["reconcile_seat_booked"] * 2
