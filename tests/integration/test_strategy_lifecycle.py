"""A booking made under any strategy is read, cancelled and audited the same way (real MariaDB, Redis and
moto's SQS, queues delivered by the local poller)."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

import pytest

from chalicelib.domain.errors import NotCancellable, NotFound, SeatUnavailable
from chalicelib.domain.models import Booking, BookingStatus

pytestmark = pytest.mark.timeout(90)
STRATEGIES = ["db_lock", "redis_lock", "redis_async", "fifo_partition", "stream_state"]
ASYNCHRONOUS = ["redis_async", "fifo_partition", "stream_state"]
SEATS_PER_ROW = 6


def seat_map(services, performance_id: int) -> dict:
    """What GET /performances/{id}/seats answers (app.py's seat_map route)."""
    return services.seat_state.seat_map(services.catalogue.performance(performance_id))


def statuses(services, performance_id: int) -> dict[int, str]:
    return {
        seat["seat_id"]: seat["status"]
        for section in seat_map(services, performance_id)["sections"]
        for seat in section["seats"]
    }


def book(services, performance_id: int, user_id: str, seat_ids: list[int], strategy: str) -> Booking:
    booking = services.booking_service.book(performance_id, {"user_id": user_id, "seat_ids": seat_ids}, None)
    expected = BookingStatus.PENDING if strategy in ASYNCHRONOUS else BookingStatus.CONFIRMED
    assert booking.status is expected, "201 CONFIRMED for the synchronous strategies, 202 PENDING otherwise"
    return booking


def assert_audit(sql, services, performance_id: int, expected: dict[str, tuple[str, str]], holder) -> None:
    """MySQL: the bookings are exactly `expected` (id -> (user, status)); the only active seat rows are
    `holder`'s; the Redis seat map says the same as MySQL, seat by seat."""
    rows = sql("SELECT booking_id, user_id, status FROM bookings WHERE performance_id = %s", performance_id)
    assert {row[0]: (row[1], row[2]) for row in rows} == expected
    active = dict(
        sql(
            "SELECT seat_id, booking_id FROM booking_seats WHERE performance_id = %s AND active = 1",
            performance_id,
        )
    )
    assert active == ({seat: holder.booking_id for seat in holder.seat_ids} if holder else {})
    states = services.seat_store.seat_states(performance_id)
    assert {seat: state for seat, state in states.items() if state != "0"} == {
        seat: f"B:{booking_id}" for seat, booking_id in active.items()
    }, "the Redis seat map and MySQL disagree"


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_a_booking_is_read_cancelled_and_audited_the_same_way(
    strategy, services, new_performance, drain, sql
) -> None:
    performance = new_performance(strategy=strategy, rows=1, seats_per_row=SEATS_PER_ROW)
    pid, first = performance["performance_id"], performance["sections"][0]["first_seat_id"]
    seats = [first + 3, first + 1]  # given unsorted: every strategy stores them in ascending order

    booking = book(services, pid, "ann", seats, strategy)
    drain()

    stored = services.booking_service.get(booking.booking_id)
    assert stored == Booking(
        booking.booking_id, pid, "ann", (first + 1, first + 3), BookingStatus.CONFIRMED, strategy, None
    )
    after_booking = seat_map(services, pid)
    assert after_booking["strategy"] == strategy
    assert after_booking["sections"][0]["available"] == SEATS_PER_ROW - 2
    assert {s: st for s, st in statuses(services, pid).items() if st != "AVAILABLE"} == {
        first + 1: "BOOKED",
        first + 3: "BOOKED",
    }
    assert_audit(sql, services, pid, {booking.booking_id: ("ann", "CONFIRMED")}, stored)

    with pytest.raises(NotFound):  # not theirs: as if it did not exist
        services.booking_service.cancel(booking.booking_id, "mallory")
    assert services.booking_service.get(booking.booking_id).status is BookingStatus.CONFIRMED
    assert statuses(services, pid)[first + 1] == "BOOKED", "a refused cancel changes nothing"

    cancelled = services.booking_service.cancel(booking.booking_id, "ann")
    assert cancelled.status is BookingStatus.CANCELLED
    assert cancelled.seat_ids == stored.seat_ids and cancelled.strategy == strategy
    assert services.booking_service.get(booking.booking_id).status is BookingStatus.CANCELLED
    assert set(statuses(services, pid).values()) == {"AVAILABLE"}
    assert seat_map(services, pid)["sections"][0]["available"] == SEATS_PER_ROW
    assert_audit(sql, services, pid, {booking.booking_id: ("ann", "CANCELLED")}, None)
    with pytest.raises(NotCancellable):
        services.booking_service.cancel(booking.booking_id, "ann")

    again = book(services, pid, "bob", seats, strategy)
    drain()

    assert services.booking_service.get(again.booking_id).status is BookingStatus.CONFIRMED
    assert {s: st for s, st in statuses(services, pid).items() if st != "AVAILABLE"} == {
        first + 1: "BOOKED",
        first + 3: "BOOKED",
    }
    assert_audit(
        sql,
        services,
        pid,
        {booking.booking_id: ("ann", "CANCELLED"), again.booking_id: ("bob", "CONFIRMED")},
        again,
    )
    assert sql(
        "SELECT COUNT(*) FROM booking_seats WHERE booking_id = %s AND active IS NULL", booking.booking_id
    ) == [(2,)], "the cancelled booking keeps its seat rows, inactive"
    assert dict(sql("SELECT booking_id, strategy FROM bookings WHERE performance_id = %s", pid)) == {
        booking.booking_id: strategy,
        again.booking_id: strategy,
    }


@pytest.mark.parametrize("strategy", ASYNCHRONOUS)
def test_a_booking_cancelled_before_it_is_confirmed_stays_cancelled(
    strategy, services, new_performance, drain, sql
) -> None:
    """Cancelled right after the 202, before the consumer ran: CANCELLED at once and for good — the consumer
    that comes later does not resurrect it — and its seats are free for someone else."""
    performance = new_performance(strategy=strategy, rows=1, seats_per_row=SEATS_PER_ROW)
    pid, first = performance["performance_id"], performance["sections"][0]["first_seat_id"]
    seats = [first, first + 2]

    booking = book(services, pid, "ann", seats, strategy)
    with pytest.raises(NotFound):  # not theirs: as if it did not exist
        services.booking_service.cancel(booking.booking_id, "mallory")
    cancelled = services.booking_service.cancel(booking.booking_id, "ann")

    assert cancelled.status is BookingStatus.CANCELLED
    assert services.booking_service.get(booking.booking_id).status is BookingStatus.CANCELLED
    assert set(statuses(services, pid).values()) == {"AVAILABLE"}
    with pytest.raises(NotCancellable):
        services.booking_service.cancel(booking.booking_id, "ann")

    drain()  # the request's message is delivered after the cancel

    assert services.booking_service.get(booking.booking_id).status is BookingStatus.CANCELLED
    assert set(statuses(services, pid).values()) == {"AVAILABLE"}
    assert_audit(sql, services, pid, {booking.booking_id: ("ann", "CANCELLED")}, None)

    again = book(services, pid, "bob", seats, strategy)
    drain()

    assert services.booking_service.get(again.booking_id).status is BookingStatus.CONFIRMED
    assert services.booking_service.get(booking.booking_id).status is BookingStatus.CANCELLED
    assert_audit(
        sql,
        services,
        pid,
        {booking.booking_id: ("ann", "CANCELLED"), again.booking_id: ("bob", "CONFIRMED")},
        again,
    )


@contextlib.contextmanager
def cancel_paused_before_its_release(services, strategy: str, booking: Booking) -> Iterator[None]:
    """The owner's cancel of `booking` runs in a thread and is held right after it committed in MySQL,
    before the strategy gives the seats back in Redis (a descheduled thread, a slow round trip), for as long
    as the block runs; then it finishes."""
    instance = services.strategies[strategy]
    real_release = instance.release
    paused, resume = threading.Event(), threading.Event()

    def late_release(cancelled: Booking) -> None:
        paused.set()
        assert resume.wait(10)
        real_release(cancelled)

    instance.release = late_release  # an instance attribute over the method, removed below
    cancelling = threading.Thread(
        target=services.booking_service.cancel, args=(booking.booking_id, booking.user_id)
    )
    cancelling.start()
    try:
        assert paused.wait(5), "precondition: the cancel committed in MySQL and is about to release in Redis"
        del instance.release
        yield
    finally:
        vars(instance).pop("release", None)
        resume.set()
        cancelling.join(10)


@pytest.mark.parametrize("strategy", ["db_lock", "redis_lock"])
def test_a_seat_rebooked_while_its_cancel_is_still_releasing_it_shows_booked(
    strategy, services, new_performance, sql, monkeypatch
) -> None:
    """Ann cancels; her cancel has committed in MySQL but not yet given the seat back in Redis (a descheduled
    thread, a slow Redis round trip) when Bob books the seat, and his early look at the map finds nothing to
    refuse (the map not loaded: Redis restarted) — MySQL, the judge of every acceptance, says it is free.
    Afterwards the seat map must show Bob's seat BOOKED, as MySQL has it. (With the map loaded, Bob is refused
    from it until the release lands: the next test.)"""
    performance = new_performance(strategy=strategy, rows=1, seats_per_row=4)
    pid, seat = performance["performance_id"], performance["sections"][0]["first_seat_id"]
    ann = book(services, pid, "ann", [seat], strategy)
    with cancel_paused_before_its_release(services, strategy, ann), monkeypatch.context() as unloaded:
        unloaded.setattr(services.seat_store, "taken_among", lambda performance_id, seat_ids: None)
        bob = book(services, pid, "bob", [seat], strategy)

    assert sql("SELECT booking_id FROM booking_seats WHERE seat_id = %s AND active = 1", seat) == [
        (bob.booking_id,)
    ]
    assert services.seat_store.seat_states(pid)[seat] == f"B:{bob.booking_id}", "Redis and MySQL disagree"
    assert statuses(services, pid)[seat] == "BOOKED"


@pytest.mark.parametrize("memory_seconds", [0, 0.25], ids=["no-refusal-memory", "refusal-memory"])
@pytest.mark.parametrize("strategy", ["db_lock", "redis_lock"])
def test_a_seat_the_map_still_shows_sold_is_refused_until_its_cancel_releases_it(
    strategy, memory_seconds, services, new_performance, sql, monkeypatch
) -> None:
    """The lock strategies' early refusal from the seat map (docs/decisions.md): while Ann's cancel has
    committed in MySQL but not yet given the seat back in Redis, Bob is refused (409, the map still shows it
    sold) without MySQL being asked; once the release lands he gets the seat — with the refusal memory on
    too (services/recently_taken.py): this process remembered Bob's refusal, and its own cancel forgets."""
    monkeypatch.setattr(services.recently_taken, "ttl_seconds", memory_seconds)
    performance = new_performance(strategy=strategy, rows=1, seats_per_row=4)
    pid, seat = performance["performance_id"], performance["sections"][0]["first_seat_id"]
    ann = book(services, pid, "ann", [seat], strategy)
    with cancel_paused_before_its_release(services, strategy, ann):
        with pytest.raises(SeatUnavailable) as refused:
            book(services, pid, "bob", [seat], strategy)
        assert refused.value.holders == {seat: ann.booking_id}  # the map's answer, not MySQL's

    bob = book(services, pid, "bob", [seat], strategy)
    assert sql("SELECT booking_id FROM booking_seats WHERE seat_id = %s AND active = 1", seat) == [
        (bob.booking_id,)
    ]
    assert services.seat_store.seat_states(pid)[seat] == f"B:{bob.booking_id}"


@pytest.mark.parametrize("strategy", ASYNCHRONOUS)
def test_a_cancel_between_the_consumers_insert_and_its_seat_map_update_leaves_the_seat_free(
    strategy, services, new_performance, drain, sql, monkeypatch
) -> None:
    """The consumer has stored Ann's booking CONFIRMED in MySQL; before it marks the seats booked in Redis,
    Ann cancels (she has had the booking id since the 202). The late seat-map update must not take the seat
    back: the map shows it AVAILABLE, as MySQL has it, and Bob can book it."""
    performance = new_performance(strategy=strategy, rows=1, seats_per_row=4)
    pid, seat = performance["performance_id"], performance["sections"][0]["first_seat_id"]
    ann = book(services, pid, "ann", [seat], strategy)
    real_confirm = services.seat_store.confirm
    cancelled: list[Booking] = []

    def cancel_first(booking_id: str, *args, **kwargs) -> int:
        if booking_id == ann.booking_id and not cancelled:
            cancelled.append(services.booking_service.cancel(ann.booking_id, "ann"))
        return real_confirm(booking_id, *args, **kwargs)

    monkeypatch.setattr(services.seat_store, "confirm", cancel_first)
    drain()
    monkeypatch.undo()

    assert [b.status for b in cancelled] == [BookingStatus.CANCELLED], "the cancel ran inside the window"
    assert statuses(services, pid)[seat] == "AVAILABLE"
    assert_audit(sql, services, pid, {ann.booking_id: ("ann", "CANCELLED")}, None)
    bob = book(services, pid, "bob", [seat], strategy)
    drain()
    assert services.booking_service.get(bob.booking_id).status is BookingStatus.CONFIRMED
    assert_audit(
        sql, services, pid, {ann.booking_id: ("ann", "CANCELLED"), bob.booking_id: ("bob", "CONFIRMED")}, bob
    )
