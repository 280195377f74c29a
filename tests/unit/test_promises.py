"""Issue 13, "a 202 is a promise", forced deterministically with fakes and no server: the journal before the
202, a failed send, settling by compare-and-set, a give-up while MySQL is away, and the reconcile job's
decisions. The same promises against real servers, with their races and audits: tests/integration
(test_promises.py, test_redis_async.py, test_reconcile.py)."""

from __future__ import annotations

import pytest

from chalicelib.domain.booking_ids import mint
from chalicelib.domain.errors import ServiceUnavailable
from chalicelib.domain.messages import BookingRequested
from chalicelib.domain.models import Booking, BookingStatus, Performance
from chalicelib.domain.seat_holds import BookingRecord
from chalicelib.services.reconcile import ABANDONED_TAKE_SECONDS
from tests.support.fakes import RecordingQueue, RecordingStream
from tests.support.offline import Offline

CONFIRMED, PENDING, FAILED = BookingStatus.CONFIRMED, BookingStatus.PENDING, BookingStatus.FAILED
CANCELLED = BookingStatus.CANCELLED
ASYNCHRONOUS = ("redis_async", "fifo_partition", "stream_state")


def channel(system: Offline, strategy: str) -> RecordingQueue | RecordingStream:
    return {
        "redis_async": system.booking_queue,
        "fifo_partition": system.fifo_queue,
        "stream_state": system.request_stream,
    }[strategy]


def book(system: Offline, performance: Performance, seat: int, user: str = "ann", key: str | None = None):
    return system.booking_service.book(performance.performance_id, {"user_id": user, "seat_ids": [seat]}, key)


def past_the_deadline(system: Offline) -> None:
    system.clock.advance(system.reconciler.hold_deadline_seconds + 60)


# --- the journal and the send --------------------------------------------------------------------------
@pytest.mark.parametrize("strategy", ASYNCHRONOUS)
def test_every_202_is_journaled_in_mysql_before_it_is_answered(system: Offline, strategy: str) -> None:
    performance = system.new_performance(strategy)
    journal_when_sent: list[list[Booking]] = []
    sink = channel(system, strategy)
    real_check = sink.outage.check

    def check(method: str) -> None:  # what MySQL holds at the moment the message leaves
        journal_when_sent.append(system.bookings.of_user("ann"))
        real_check(method)

    sink.outage.check = check
    booking = book(system, performance, performance.seat_ids[0])
    assert booking.status is PENDING
    assert journal_when_sent == [[booking]]


@pytest.mark.parametrize(
    "strategy", ["redis_async", "fifo_partition", "stream_state", "db_lock", "redis_lock"]
)
def test_no_answer_while_mysql_cannot_journal(system: Offline, strategy: str) -> None:
    performance = system.new_performance(strategy)
    seat = performance.seat_ids[0]
    system.bookings.outage.down(
        "insert", "insert_in_line", "insert_if_seats_free", "insert_with_seat_row_locks"
    )
    with pytest.raises(ServiceUnavailable):
        book(system, performance, seat)
    system.bookings.outage.up()
    assert system.bookings.holders_of([seat]) == {}
    assert system.seat_states(performance)[seat] == "0"
    assert system.booking_queue.messages == system.fifo_queue.messages == system.request_stream.records == []


@pytest.mark.parametrize("strategy", ASYNCHRONOUS)
def test_a_send_that_fails_settles_the_booking_failed_and_answers_503(system: Offline, strategy: str) -> None:
    performance = system.new_performance(strategy)
    seat = performance.seat_ids[0]
    channel(system, strategy).outage.down()
    with pytest.raises(ServiceUnavailable, match="nothing was booked"):
        book(system, performance, seat)
    (failed,) = system.bookings.of_user("ann")
    assert failed.status is FAILED
    assert system.seat_states(performance)[seat] == "0"
    assert system.seat_store.read_booking(failed.booking_id).status is FAILED
    channel(system, strategy).outage.up()
    assert book(system, performance, seat, user="bob").status is PENDING  # the seat is free for the next


def test_a_send_that_fails_while_mysql_is_away_stays_pending_and_a_retry_sends_it(system: Offline) -> None:
    performance = system.new_performance()
    seat = performance.seat_ids[0]
    system.booking_queue.outage.down()
    system.bookings.outage.down("settle")
    with pytest.raises(ServiceUnavailable):
        book(system, performance, seat, key="retry-me")
    (pending,) = system.bookings.of_user("ann")
    assert pending.status is PENDING  # never a Redis-only FAILED: nobody was told anything final
    assert system.seat_states(performance)[seat] == f"H:{pending.booking_id}"
    system.booking_queue.outage.up()
    system.bookings.outage.up()
    retried = book(system, performance, seat, key="retry-me")  # the same Idempotency-Key
    assert retried.booking_id == pending.booking_id
    assert system.deliver(system.booking_queue) is CONFIRMED


# --- settling ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("strategy", ["redis_async", "fifo_partition"])
def test_a_redelivery_never_turns_failed_into_confirmed(system: Offline, strategy: str) -> None:
    performance = system.new_performance(strategy)
    seat = performance.seat_ids[0]
    booking = book(system, performance, seat)
    system.strategies[strategy].give_up(booking.booking_id, "gave up", None)
    system.seat_store.delete_record(booking.booking_id)  # the record expired, or Redis lost it
    queue = channel(system, strategy)
    assert system.deliver(queue) is FAILED  # a DLQ redrive
    assert system.bookings.get(booking.booking_id).status is FAILED
    assert system.seat_states(performance)[seat] == "0"


@pytest.mark.parametrize("strategy", ["redis_async", "fifo_partition"])
def test_a_late_consumer_never_turns_a_cancelled_booking_back_to_confirmed(
    system: Offline, strategy: str
) -> None:
    performance = system.new_performance(strategy)
    seat = performance.seat_ids[0]
    booking = book(system, performance, seat)
    system.booking_service.cancel(booking.booking_id, "ann")
    assert system.deliver(channel(system, strategy)) is CANCELLED
    assert system.seat_states(performance)[seat] == "0"
    assert system.seat_store.read_booking(booking.booking_id).status is CANCELLED


def test_a_give_up_while_mysql_is_away_leaves_the_booking_pending(system: Offline) -> None:
    performance = system.new_performance()
    seat = performance.seat_ids[0]
    booking = book(system, performance, seat)
    system.bookings.outage.down()
    with pytest.raises(Exception, match="gave up after"):
        system.deliver(system.booking_queue, receive_count=3)
    system.bookings.outage.up()
    assert system.bookings.get(booking.booking_id).status is PENDING
    assert system.seat_store.read_booking(booking.booking_id).status is PENDING  # no Redis-only FAILED
    assert system.seat_states(performance)[seat] == f"H:{booking.booking_id}"
    past_the_deadline(system)
    assert system.reconciler.run(performance.performance_id).repairs["stale_pending_failed"] == 1
    assert system.bookings.get(booking.booking_id).status is FAILED
    assert system.seat_states(performance)[seat] == "0"


# --- the reconcile job's decisions ---------------------------------------------------------------------
@pytest.mark.parametrize(("status", "shown"), [(PENDING, "H"), (CONFIRMED, "B")])
def test_reconcile_puts_back_a_holder_the_map_lost(
    system: Offline, status: BookingStatus, shown: str
) -> None:
    performance = system.new_performance()
    seat = performance.seat_ids[0]
    booking = book(system, performance, seat)
    if status is CONFIRMED:
        system.deliver(system.booking_queue)
    system.seat_store.replace(performance.performance_id, [(seat, f"{shown}:{booking.booking_id}", "0")])
    summary = system.reconciler.run(performance.performance_id)
    assert summary.repairs["seats_booked" if status is CONFIRMED else "seats_held"] == 1
    assert system.seat_states(performance)[seat] == f"{shown}:{booking.booking_id}"
    assert system.reconciler.run(performance.performance_id).total_repairs == 0  # repaired once


def take_unknown_to_mysql(system: Offline, performance: Performance, seat: int) -> str:
    """A take whose journal write never happened (the request gave up on MySQL after Redis took)."""
    booking_id = mint(performance.performance_id)
    record = BookingRecord(booking_id, performance.performance_id, "ann", (seat,), "redis_async", PENDING)
    system.seat_store.reserve(record)
    return booking_id


def test_reconcile_leaves_a_take_in_flight_alone(system: Offline) -> None:
    performance = system.new_performance()
    seat = performance.seat_ids[0]
    booking_id = take_unknown_to_mysql(system, performance, seat)
    summary = system.reconciler.run(performance.performance_id)
    assert (summary.holds_in_flight, summary.total_repairs) == (1, 0)
    assert system.seat_states(performance)[seat] == f"H:{booking_id}"


def test_reconcile_releases_an_abandoned_take_only_once_failed_has_won(system: Offline) -> None:
    performance = system.new_performance()
    seat = performance.seat_ids[0]
    booking_id = take_unknown_to_mysql(system, performance, seat)
    system.clock.advance(ABANDONED_TAKE_SECONDS + 1)
    summary = system.reconciler.run(performance.performance_id)
    assert summary.repairs["stale_holds_failed"] == 1
    assert system.bookings.get(booking_id).status is FAILED  # the id is claimed: nothing can confirm it
    assert system.seat_states(performance)[seat] == "0"
    message = BookingRequested(booking_id, performance.performance_id, "ann", (seat,), "redis_async")
    assert system.strategies["redis_async"].finish(message) is FAILED


def test_reconcile_keeps_the_seats_of_a_take_journaled_and_confirmed_meanwhile(system: Offline) -> None:
    """The late journal and confirm land between reconcile's "not in MySQL" and its give-up: FAILED does not
    win the compare-and-set, so the seats stay the booking's."""
    performance = system.new_performance()
    seat = performance.seat_ids[0]
    booking_id = take_unknown_to_mysql(system, performance, seat)
    late = Booking(booking_id, performance.performance_id, "ann", (seat,), PENDING, "redis_async")
    looked = []
    real_get = system.bookings.get

    def get(wanted: str) -> Booking | None:
        found = real_get(wanted)
        if wanted == booking_id and not looked:
            looked.append(wanted)  # reconcile has seen "not in MySQL": now the journal and confirm land
            system.bookings.insert(late)
            system.bookings.settle(booking_id, CONFIRMED)
        return found

    system.bookings.get = get
    system.clock.advance(ABANDONED_TAKE_SECONDS + 1)
    summary = system.reconciler.run(performance.performance_id)
    assert looked == [booking_id]
    assert (summary.repairs["stale_holds_failed"], summary.changed_meanwhile) == (0, 1)
    assert system.bookings.get(booking_id).status is CONFIRMED
    assert system.seat_states(performance)[seat] == f"B:{booking_id}"


@pytest.mark.parametrize("strategy", ASYNCHRONOUS)
def test_reconcile_fails_a_pending_booking_past_the_hold_deadline_only(
    system: Offline, strategy: str
) -> None:
    performance = system.new_performance(strategy)
    seat = performance.seat_ids[0]
    booking = book(system, performance, seat)
    assert system.reconciler.run(performance.performance_id).repairs["stale_pending_failed"] == 0
    past_the_deadline(system)
    dry = system.reconciler.run(performance.performance_id, dry_run=True)
    assert dry.repairs["stale_pending_failed"] == 1
    assert system.bookings.get(booking.booking_id).status is PENDING  # a dry run changes nothing
    assert system.reconciler.run(performance.performance_id).repairs["stale_pending_failed"] == 1
    assert system.bookings.get(booking.booking_id).status is FAILED
    assert system.seat_states(performance)[seat] == "0"


def test_reconcile_releases_the_seats_a_final_booking_still_shows(system: Offline) -> None:
    performance = system.new_performance()
    seat = performance.seat_ids[0]
    booking = book(system, performance, seat)
    system.bookings.settle(booking.booking_id, FAILED, "decided while Redis was away")  # the map missed it
    summary = system.reconciler.run(performance.performance_id)
    assert summary.repairs["seats_released"] == 1
    assert system.seat_states(performance)[seat] == "0"
    assert system.seat_store.read_booking(booking.booking_id).status is FAILED
