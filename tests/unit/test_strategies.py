"""Each strategy's own logic with no server: book, release, and the asynchronous ones' finish, give_up and
resend. MySQL is in memory, Redis is fakeredis running the project's Lua. The races between processes (and
MySQL's locks) are the integration tests' (tests/integration/test_races.py and each strategy's file)."""

from __future__ import annotations

import json

import pytest

from chalicelib.domain.booking_ids import mint
from chalicelib.domain.errors import NotFound, SeatUnavailable, ServiceUnavailable
from chalicelib.domain.messages import BookingRequested, LedgerEntry, LedgerOutcome, parse_stream_command
from chalicelib.domain.models import Booking, BookingRequest, BookingStatus, Performance
from chalicelib.strategies.partitioning import section_partition
from tests.support.offline import Offline

CONFIRMED, PENDING, FAILED = BookingStatus.CONFIRMED, BookingStatus.PENDING, BookingStatus.FAILED


def request(performance: Performance, *seats: int, user: str = "ann") -> BookingRequest:
    return BookingRequest(
        mint(performance.performance_id),
        performance.performance_id,
        user,
        seats,
        performance.strategy,
        performance,
    )


def book(system: Offline, performance: Performance, *seats: int, user: str = "ann") -> Booking:
    return system.strategies[performance.strategy].book(request(performance, *seats, user=user))


# --- the synchronous strategies ------------------------------------------------------------------------
@pytest.mark.parametrize("strategy", ["db_lock", "redis_lock"])
def test_a_synchronous_strategy_confirms_once_and_refuses_the_next(system: Offline, strategy: str) -> None:
    performance = system.new_performance(strategy)
    seat = performance.seat_ids[0]
    first = book(system, performance, seat, seat + 1)
    assert first.status is CONFIRMED
    assert system.seat_states(performance)[seat] == f"B:{first.booking_id}"
    with pytest.raises(SeatUnavailable) as refused:
        book(system, performance, seat + 1, seat + 2, user="bob")
    assert (refused.value.seat_ids, refused.value.holders) == ([seat + 1], {seat + 1: first.booking_id})
    assert system.bookings.holders_of([seat + 2]) == {}  # all or nothing


MYSQL_WRITES = {"db_lock": "insert_with_seat_row_locks", "redis_lock": "insert_if_seats_free"}


def count_mysql_writes(system: Offline, strategy: str) -> list[int]:
    """The lock strategy's MySQL write, counted (each call appends its seats' count)."""
    calls: list[int] = []
    method = MYSQL_WRITES[strategy]
    real = getattr(system.bookings, method)

    def counted(booking, idempotency_key=None):
        calls.append(len(booking.seat_ids))
        return real(booking, idempotency_key)

    setattr(system.bookings, method, counted)
    return calls


@pytest.mark.parametrize("strategy", ["db_lock", "redis_lock"])
def test_a_lock_strategy_refuses_a_seat_the_map_shows_sold_without_asking_mysql(
    system: Offline, strategy: str
) -> None:
    performance = system.new_performance(strategy)
    seat = performance.seat_ids[0]
    first = book(system, performance, seat)
    writes = count_mysql_writes(system, strategy)
    system.bookings.outage.down()  # any MySQL call would now fail with a 503, not a 409
    with pytest.raises(SeatUnavailable) as refused:
        book(system, performance, seat + 1, seat, user="bob")
    assert (refused.value.seat_ids, refused.value.holders) == ([seat], {seat: first.booking_id})
    assert writes == []
    assert system.redis.keys("t:*:lock:*") == []  # redis_lock: not even a lease taken
    system.bookings.outage.up()
    assert book(system, performance, seat + 1, user="bob").status is CONFIRMED  # shown free: MySQL decides
    assert writes == [1]


@pytest.mark.parametrize("strategy", ["db_lock", "redis_lock"])
def test_a_lock_strategy_asks_mysql_when_the_map_is_not_loaded(system: Offline, strategy: str) -> None:
    performance = system.new_performance(strategy)
    seat = performance.seat_ids[0]
    first = book(system, performance, seat)
    system.redis.delete(system.seat_store.seats_key(performance.performance_id))  # e.g. Redis restarted
    writes = count_mysql_writes(system, strategy)
    with pytest.raises(SeatUnavailable) as refused:
        book(system, performance, seat, user="bob")
    assert refused.value.holders == {seat: first.booking_id}  # MySQL's answer
    assert writes == [1]


def test_db_lock_asks_mysql_when_redis_is_down(system: Offline) -> None:
    performance = system.new_performance("db_lock")
    seat = performance.seat_ids[0]
    first = book(system, performance, seat)
    writes = count_mysql_writes(system, "db_lock")
    system.redis_down()
    with pytest.raises(SeatUnavailable) as refused:  # not a 503: MySQL still judges
        book(system, performance, seat, user="bob")
    assert refused.value.holders == {seat: first.booking_id}
    assert writes == [1]
    assert book(system, performance, seat + 1, user="bob").status is CONFIRMED  # its mirror missed Redis
    assert writes == [1, 1]


def test_db_lock_never_waits_for_a_row_another_transaction_locks(system: Offline) -> None:
    performance = system.new_performance("db_lock")
    seat = performance.seat_ids[0]
    system.bookings.row_locked_seats.add(seat)
    with pytest.raises(SeatUnavailable, match="being booked by someone else"):
        book(system, performance, seat)


def test_redis_lock_refuses_a_seat_whose_lease_another_holds_and_gives_its_own_back(system: Offline) -> None:
    performance = system.new_performance("redis_lock")
    strategy = system.strategies["redis_lock"]
    seat = performance.seat_ids[0]
    lease = system.redis.lock(strategy.lease_name(performance.performance_id, seat + 1), timeout=5)
    assert lease.acquire(blocking=False)
    with pytest.raises(SeatUnavailable, match="being booked by someone else"):
        book(system, performance, seat, seat + 1)
    assert not system.redis.exists(strategy.lease_name(performance.performance_id, seat))  # given back
    lease.release()
    booking = book(system, performance, seat, seat + 1)
    assert booking.status is CONFIRMED
    assert system.redis.keys("t:*:lock:*") == []  # every lease released after the write


@pytest.mark.parametrize("strategy", ["db_lock", "redis_lock"])
def test_a_release_that_misses_redis_is_realigned_from_mysql_later(system: Offline, strategy: str) -> None:
    performance = system.new_performance(strategy)
    seat = performance.seat_ids[0]
    booking = book(system, performance, seat)
    _, cancelled = system.bookings.cancel(booking.booking_id)  # MySQL decides first, as the service does
    system.redis_down()
    system.strategies[strategy].release(cancelled)  # never fails what MySQL has decided
    system.redis_up()
    assert (
        system.redis.hget(system.seat_store.seats_key(performance.performance_id), seat)
        == f"B:{booking.booking_id}"
    )
    # The next use of the seat store realigns the map that missed the change with MySQL (reconcile).
    assert system.seat_states(performance)[seat] == "0"


# --- redis_async -------------------------------------------------------------------------------------------
def test_redis_async_takes_in_redis_journals_in_mysql_and_sends(system: Offline) -> None:
    performance = system.new_performance()
    seat = performance.seat_ids[0]
    booking = book(system, performance, seat)
    assert booking.status is PENDING
    assert system.seat_states(performance)[seat] == f"H:{booking.booking_id}"
    assert system.bookings.holders_of([seat]) == {seat: (booking.booking_id, PENDING)}
    assert [BookingRequested.from_json(b).booking_id for b in system.booking_queue.bodies()] == [
        booking.booking_id
    ]
    with pytest.raises(SeatUnavailable) as refused:  # refused by the take: MySQL is not asked
        book(system, performance, seat, user="bob")
    assert refused.value.holders == {seat: booking.booking_id}


def test_redis_async_loads_a_missing_seat_map_before_taking(system: Offline) -> None:
    performance = system.new_performance()
    system.seat_store.forget_performance(performance.performance_id)
    booking = book(system, performance, performance.seat_ids[0])
    assert system.seat_states(performance)[performance.seat_ids[0]] == f"H:{booking.booking_id}"


def test_redis_async_refuses_a_seat_the_map_does_not_have(system: Offline) -> None:
    performance = system.new_performance()
    with pytest.raises(NotFound):
        book(system, performance, performance.seat_ids[-1] + 1)


def test_redis_async_gives_the_take_back_when_mysql_cannot_journal_it(system: Offline) -> None:
    performance = system.new_performance()
    seat = performance.seat_ids[0]
    system.bookings.outage.down("insert")
    attempt = request(performance, seat)
    with pytest.raises(ServiceUnavailable):
        system.strategies["redis_async"].book(attempt)
    assert system.seat_states(performance)[seat] == "0"
    assert system.seat_store.read_booking(attempt.booking_id) is None
    assert system.booking_queue.messages == []  # nothing sent, nothing promised


def test_a_map_that_lost_a_hold_is_refused_by_the_guard_and_repaired(system: Offline) -> None:
    performance = system.new_performance()
    seat = performance.seat_ids[0]
    first = book(system, performance, seat)
    system.seat_store.replace(performance.performance_id, [(seat, f"H:{first.booking_id}", "0")])  # lost
    with pytest.raises(SeatUnavailable) as refused:
        book(system, performance, seat, user="bob")
    assert refused.value.holders == {seat: first.booking_id}
    assert system.seat_states(performance)[seat] == f"H:{first.booking_id}"  # the real holder put back


def test_redis_async_finish_confirms_once(system: Offline) -> None:
    performance = system.new_performance()
    booking = book(system, performance, performance.seat_ids[0])
    strategy = system.strategies["redis_async"]
    message = BookingRequested.of(booking)
    assert strategy.finish(message) is CONFIRMED
    assert strategy.finish(message) is CONFIRMED  # a redelivery changes nothing
    assert system.seat_states(performance)[performance.seat_ids[0]] == f"B:{booking.booking_id}"
    assert system.seat_store.read_booking(booking.booking_id).status is CONFIRMED


def test_give_up_fails_the_booking_once_and_gives_its_seats_back(system: Offline) -> None:
    performance = system.new_performance()
    seat = performance.seat_ids[0]
    booking = book(system, performance, seat)
    strategy = system.strategies["redis_async"]
    assert strategy.give_up(booking.booking_id, "no luck", None) is FAILED
    assert strategy.give_up(booking.booking_id, "no luck again", None) is FAILED
    assert system.bookings.get(booking.booking_id).reason == "no luck"
    assert system.seat_states(performance)[seat] == "0"
    assert system.bookings.actions(booking.booking_id) == ["booking_failed"]


def test_give_up_claims_a_booking_mysql_never_heard_of_as_failed(system: Offline) -> None:
    performance = system.new_performance()
    seat = performance.seat_ids[0]
    message = BookingRequested(
        mint(performance.performance_id), performance.performance_id, "ann", (seat,), "redis_async"
    )
    assert system.strategies["redis_async"].give_up(message.booking_id, "lost", message) is FAILED
    assert system.bookings.get(message.booking_id).status is FAILED  # nothing can confirm it now
    assert system.strategies["redis_async"].finish(message) is FAILED
    assert system.strategies["redis_async"].give_up(message.booking_id, "unknown", None) is FAILED


def test_resend_publishes_the_journaled_booking_again(system: Offline) -> None:
    performance = system.new_performance()
    booking = book(system, performance, performance.seat_ids[0])
    system.strategies["redis_async"].resend(booking, performance)
    assert system.booking_queue.bodies() == [BookingRequested.of(booking).to_json()] * 2


# --- fifo_partition ----------------------------------------------------------------------------------------
def test_fifo_waits_in_line_per_section_and_the_line_decides(system: Offline) -> None:
    performance = system.new_performance("fifo_partition", sections=2)
    seat = performance.seat_ids[0]
    first, second = book(system, performance, seat), book(system, performance, seat, user="bob")
    assert (first.status, second.status) == (PENDING, PENDING)  # a place in line, not the seats
    assert system.bookings.holders_of([seat]) == {}
    group = section_partition(performance, performance.performance_id, (seat,))
    assert [(m["group_id"], m["deduplication_id"]) for m in system.fifo_queue.messages] == [
        (group, first.booking_id),
        (group, second.booking_id),
    ]
    assert system.deliver(system.fifo_queue, index=0) is CONFIRMED
    assert system.deliver(system.fifo_queue, index=1) is BookingStatus.REJECTED
    assert system.deliver(system.fifo_queue, index=0) is CONFIRMED  # a redelivery: decided once
    assert system.seat_states(performance)[seat] == f"B:{first.booking_id}"
    with pytest.raises(SeatUnavailable):  # now the map shows it: refused before joining the line
        book(system, performance, seat, user="cat")


def test_fifo_puts_a_booking_of_another_section_in_another_group(system: Offline) -> None:
    performance = system.new_performance("fifo_partition", sections=2)
    last_section = performance.sections[-1]
    book(system, performance, performance.seat_ids[0])
    book(system, performance, last_section.first_seat_id)
    groups = [m["group_id"] for m in system.fifo_queue.messages]
    assert groups[0] != groups[1] and groups[1].endswith(f"section-{last_section.section_id}")


# --- stream_state ------------------------------------------------------------------------------------------
def run_processor(system: Offline) -> list[LedgerEntry]:
    """What the processor's batch handler does with every request on the stream, in order."""
    system.ledger.catch_up()
    entries = []
    for data, partition in system.request_stream.records[len(system.changelog.records) :]:
        entry = system.ledger.decide(parse_stream_command(data))
        if entry is not None:
            system.changelog.put(entry.to_json(), partition)
            entries.append(entry)
    return entries


def test_stream_state_decides_in_the_ledger_and_the_persister_settles(system: Offline) -> None:
    performance = system.new_performance("stream_state")
    seat = performance.seat_ids[0]
    first, second = book(system, performance, seat), book(system, performance, seat, user="bob")
    partition = section_partition(performance, performance.performance_id, (seat,))
    assert {key for _, key in system.request_stream.records} == {partition}
    entries = run_processor(system)
    assert [e.outcome for e in entries] == [LedgerOutcome.CONFIRMED, LedgerOutcome.REJECTED]
    assert [system.persister.persist(e) for e in entries] == [CONFIRMED, BookingStatus.REJECTED]
    assert [system.persister.persist(e) for e in entries] == [CONFIRMED, BookingStatus.REJECTED]  # again
    assert system.bookings.holders_of([seat]) == {seat: (first.booking_id, CONFIRMED)}
    assert system.seat_states(performance)[seat] == f"B:{first.booking_id}"
    assert system.bookings.get(second.booking_id).reason == f"seat(s) [{seat}] were taken earlier in line"


def test_stream_state_cancel_releases_the_seat_in_the_ledger_in_line(system: Offline) -> None:
    performance = system.new_performance("stream_state")
    seat = performance.seat_ids[0]
    booking = book(system, performance, seat)
    system.persister.persist(run_processor(system)[0])
    system.booking_service.cancel(booking.booking_id, "ann")
    run_processor(system)
    assert system.ledger.holder(performance.performance_id, seat) is None
    assert book(system, performance, seat, user="bob").status is PENDING


def test_a_ledger_release_not_sent_is_left_for_the_reconcile_job(system: Offline) -> None:
    performance = system.new_performance("stream_state")
    seat = performance.seat_ids[0]
    booking = book(system, performance, seat)
    system.persister.persist(run_processor(system)[0])
    system.request_stream.outage.down()
    system.booking_service.cancel(booking.booking_id, "ann")  # MySQL and the map: done; the ledger: not
    assert system.bookings.actions(booking.booking_id) == ["ledger_release_pending"]
    system.request_stream.outage.up()
    summary = system.reconciler.run()
    assert summary.repairs["ledger_releases_resent"] == 1
    run_processor(system)
    assert system.ledger.holder(performance.performance_id, seat) is None
    assert system.reconciler.run().repairs["ledger_releases_resent"] == 0  # resent once


def test_the_database_guard_overrules_a_ledger_that_confirmed_a_taken_seat(system: Offline) -> None:
    """A booking across sections decided by another partition's ledger took a seat first: MySQL's guard
    refuses the second, which becomes REJECTED, and its ledger is told who really holds the seat."""
    performance = system.new_performance("stream_state")
    seat = performance.seat_ids[0]
    other = Booking(
        mint(performance.performance_id),
        performance.performance_id,
        "bob",
        (seat,),
        CONFIRMED,
        "stream_state",
    )
    system.bookings.insert(other)  # decided a moment ago; the map does not show it yet
    booking = book(system, performance, seat)
    entry = run_processor(system)[0]
    assert entry.outcome == LedgerOutcome.CONFIRMED  # this ledger never saw bob's booking
    assert system.persister.persist(entry) is BookingStatus.REJECTED
    release = json.loads(system.request_stream.records[-1][0])
    assert (release["booking_id"], release["holders"]) == (booking.booking_id, [[seat, other.booking_id]])
    run_processor(system)
    assert system.ledger.holder(performance.performance_id, seat) == other.booking_id
