"""The booking use cases (services/booking.py) with no server: validation, idempotency replay, dispatch to
the performance's strategy, reads while MySQL is away, cancel. MySQL is in memory, Redis is fakeredis."""

from __future__ import annotations

import pytest

from chalicelib.domain.errors import (
    HoldExpired,
    IdempotencyKeyReused,
    InvalidRequest,
    NotCancellable,
    NotFound,
    SeatUnavailable,
    ServiceUnavailable,
)
from chalicelib.domain.messages import parse_stream_command
from chalicelib.domain.models import BookingStatus
from chalicelib.services.booking import BookingService
from tests.support.offline import Offline

SYNCHRONOUS = ("db_lock", "redis_lock")
ASYNCHRONOUS = ("redis_async", "fifo_partition", "stream_state")


def body(*seats: int, user: str = "ann") -> dict:
    return {"user_id": user, "seat_ids": list(seats)}


@pytest.mark.parametrize(
    ("strategy", "status"),
    [
        *((s, BookingStatus.CONFIRMED) for s in SYNCHRONOUS),
        *((s, BookingStatus.PENDING) for s in ASYNCHRONOUS),
    ],
)
def test_the_performances_strategy_decides_and_mysql_has_the_booking(
    system: Offline, strategy: str, status: BookingStatus
) -> None:
    performance = system.new_performance(strategy)
    seat = performance.seat_ids[0]
    booking = system.booking_service.book(performance.performance_id, body(seat), None)
    assert (booking.strategy, booking.status, booking.seat_ids) == (strategy, status, (seat,))
    assert system.bookings.get(booking.booking_id) == booking  # journaled before the answer


def test_an_invalid_body_is_refused_before_any_strategy_runs(system: Offline) -> None:
    performance = system.new_performance()
    with pytest.raises(InvalidRequest):
        system.booking_service.book(performance.performance_id, {"user_id": "ann", "seat_ids": []}, None)
    with pytest.raises(InvalidRequest):
        system.booking_service.book(performance.performance_id, body(1), "key with spaces\n")
    assert system.booking_queue.messages == []


def test_an_unknown_performance_or_seat_is_not_found(system: Offline) -> None:
    performance = system.new_performance()
    with pytest.raises(NotFound):
        system.booking_service.book(10_000, body(performance.seat_ids[0]), None)
    with pytest.raises(NotFound) as unknown:
        system.booking_service.book(performance.performance_id, body(99_999), None)
    assert unknown.value.extra == {"seat_ids": [99_999]}


def test_a_seat_of_another_performance_is_an_invalid_request(system: Offline) -> None:
    mine, other = system.new_performance(), system.new_performance()
    with pytest.raises(InvalidRequest) as foreign:
        system.booking_service.book(mine.performance_id, body(other.seat_ids[0]), None)
    assert foreign.value.extra["seat_ids"] == [other.seat_ids[0]]


def test_a_repeated_idempotency_key_replays_the_first_answer(system: Offline) -> None:
    performance = system.new_performance()
    seat = performance.seat_ids[0]
    first = system.booking_service.book(performance.performance_id, body(seat), "key-1")
    again = system.booking_service.book(performance.performance_id, body(seat), "key-1")
    assert again == first
    assert len(system.booking_queue.messages) == 1  # replayed from the idempotency record: nothing sent
    with pytest.raises(IdempotencyKeyReused):
        system.booking_service.book(performance.performance_id, body(seat + 1), "key-1")


def test_a_refusal_is_replayed_for_the_same_key(system: Offline) -> None:
    performance = system.new_performance("db_lock")
    seat = performance.seat_ids[0]
    system.booking_service.book(performance.performance_id, body(seat, user="bob"), None)
    for _ in range(2):
        with pytest.raises(SeatUnavailable) as refused:
            system.booking_service.book(performance.performance_id, body(seat), "key-1")
        assert refused.value.seat_ids == [seat]


def test_once_the_idempotency_record_is_lost_mysql_answers_with_the_first_booking(system: Offline) -> None:
    """Redis lost the record (and the seat map): the key kept with the booking in MySQL finds it, and the
    still-PENDING booking is sent on again (its first send may never have left)."""
    performance = system.new_performance()
    seat = performance.seat_ids[0]
    first = system.booking_service.book(performance.performance_id, body(seat), "key-1")
    system.redis.flushall()
    again = system.booking_service.book(performance.performance_id, body(seat), "key-1")
    assert again.booking_id == first.booking_id
    assert system.booking_queue.bodies() == [system.booking_queue.bodies()[0]] * 2
    assert system.deliver(system.booking_queue) is BookingStatus.CONFIRMED
    assert system.deliver(system.booking_queue, index=0) is BookingStatus.CONFIRMED  # once, however many


def test_a_retry_whose_seat_map_shows_its_first_attempt_gets_that_booking_back(system: Offline) -> None:
    performance = system.new_performance()
    seat = performance.seat_ids[0]
    first = system.booking_service.book(performance.performance_id, body(seat), "key-1")
    for key in system.redis.scan_iter(match="t:idem*"):
        system.redis.delete(key)  # only the idempotency record is gone: the map still shows the hold
    again = system.booking_service.book(performance.performance_id, body(seat), "key-1")
    assert again.booking_id == first.booking_id


@pytest.mark.parametrize("strategy", ["db_lock", "redis_lock"])
def test_a_lock_strategys_retry_whose_map_shows_its_first_booking_gets_it_back(
    system: Offline, strategy: str
) -> None:
    """The lock strategies' refusal from the seat map names the holders too: a retry whose idempotency
    record is gone is answered with its first booking, not refused."""
    performance = system.new_performance(strategy)
    seat = performance.seat_ids[0]
    first = system.booking_service.book(performance.performance_id, body(seat), "key-1")
    for key in system.redis.scan_iter(match="t:idem*"):
        system.redis.delete(key)
    system.bookings.outage.down("insert_with_seat_row_locks", "insert_if_seats_free")  # the map answers
    again = system.booking_service.book(performance.performance_id, body(seat), "key-1")
    assert (again.booking_id, again.status) == (first.booking_id, BookingStatus.CONFIRMED)


@pytest.mark.parametrize(
    ("strategy", "minted_by_a_refusal"),
    [("db_lock", 0), ("redis_lock", 0), ("fifo_partition", 0), ("stream_state", 0), ("redis_async", 1)],
)
def test_a_booking_id_is_minted_only_where_the_strategy_needs_one(
    system: Offline, monkeypatch: pytest.MonkeyPatch, strategy: str, minted_by_a_refusal: int
) -> None:
    """A request refused from the seat map mints no id; redis_async's take writes the booking's record with
    the seats, so it mints one first."""
    from chalicelib.services import booking as booking_module

    minted: list[str] = []
    real = booking_module.mint

    def counting(*args: int | str | None) -> str:
        minted.append(real(*args))
        return minted[-1]

    monkeypatch.setattr(booking_module, "mint", counting)
    performance = system.new_performance(strategy)
    seat = performance.seat_ids[0]
    first = system.booking_service.book(performance.performance_id, body(seat), None)
    assert minted == [first.booking_id]
    if strategy in ("fifo_partition", "stream_state"):  # decided in line: the map shows it once decided
        system.seat_store.confirm(first.booking_id, performance.performance_id, (seat,), overwrite=True)
    with pytest.raises(SeatUnavailable):
        system.booking_service.book(performance.performance_id, body(seat, user="bob"), None)
    assert len(minted) == 1 + minted_by_a_refusal


def test_get_answers_from_redis_while_mysql_is_away(system: Offline) -> None:
    performance = system.new_performance()
    booking = system.booking_service.book(performance.performance_id, body(performance.seat_ids[0]), None)
    system.bookings.outage.down()
    assert system.booking_service.get(booking.booking_id) == booking
    with pytest.raises(ServiceUnavailable):
        system.booking_service.get("01ARZ3NDEKTSV4RRFFQ69G5FAV")  # neither knows it: cannot say "not found"
    system.bookings.outage.up()
    with pytest.raises(NotFound):
        system.booking_service.get("01ARZ3NDEKTSV4RRFFQ69G5FAV")
    with pytest.raises(NotFound):
        system.booking_service.get("not a booking id")


@pytest.mark.parametrize("strategy", SYNCHRONOUS + ASYNCHRONOUS)
def test_cancel_frees_the_seats_in_mysql_and_on_the_map(system: Offline, strategy: str) -> None:
    performance = system.new_performance(strategy)
    seat = performance.seat_ids[0]
    booking = system.booking_service.book(performance.performance_id, body(seat), None)
    with pytest.raises(NotFound):  # not theirs: as if it did not exist
        system.booking_service.cancel(booking.booking_id, "bob")
    cancelled = system.booking_service.cancel(booking.booking_id, "ann")
    assert cancelled.status is BookingStatus.CANCELLED
    assert system.bookings.holders_of([seat]) == {}
    assert system.seat_states(performance)[seat] == "0"
    with pytest.raises(NotCancellable):
        system.booking_service.cancel(booking.booking_id, "ann")


def test_a_cancel_with_a_key_is_replayed(system: Offline) -> None:
    performance = system.new_performance("db_lock")
    booking = system.booking_service.book(performance.performance_id, body(performance.seat_ids[0]), None)
    first = system.booking_service.cancel(booking.booking_id, "ann", "cancel-1")
    assert system.booking_service.cancel(booking.booking_id, "ann", "cancel-1") == first
    with pytest.raises(InvalidRequest):  # a key is printable ASCII
        system.booking_service.cancel(booking.booking_id, "ann", "k\x00")


def test_with_redis_down_the_fallback_strategy_books_in_mysql(system: Offline) -> None:
    fallback = system.strategies["db_lock"]
    service = BookingService(
        system.catalogue,
        system.strategies,
        system.bookings,
        system.seat_store,
        system.idempotency,
        max_seats_per_booking=10,
        metrics=system.metrics,
        redis_down_fallback=fallback,
    )
    performance = system.new_performance("redis_lock")
    system.redis_down()
    booking = service.book(performance.performance_id, body(performance.seat_ids[0]), None)
    assert (booking.status, booking.strategy) == (BookingStatus.CONFIRMED, "db_lock")
    with pytest.raises(ServiceUnavailable):  # without a fallback, Redis down is a 503
        system.booking_service.book(performance.performance_id, body(performance.seat_ids[1]), None)
    # Counted under the strategy that decided: the fallback's booking as db_lock; the 503 under redis_lock.
    assert system.metrics.counted == [
        ("BookingAccepted", "db_lock"),
        ("BookingConfirmed", "db_lock"),
        ("BookingServiceUnavailable", "redis_lock"),
    ]


DECIDING_AT_ONCE = ("db_lock", "redis_lock", "redis_async")  # a refusal at request time, from Redis or MySQL


@pytest.mark.parametrize("strategy", DECIDING_AT_ONCE)
def test_a_seat_refused_a_moment_ago_is_refused_from_memory_without_redis(
    system: Offline, strategy: str
) -> None:
    system.recently_taken.ttl_seconds = 0.25
    performance = system.new_performance(strategy)
    pid, seat = performance.performance_id, performance.seat_ids[0]
    system.booking_service.book(pid, body(seat), None)
    with pytest.raises(SeatUnavailable):
        system.booking_service.book(pid, body(seat, user="bob"), None)  # the store says so
    system.redis_down()
    system.bookings.outage.down("insert_with_seat_row_locks", "insert_if_seats_free")
    with pytest.raises(SeatUnavailable) as refused:
        system.booking_service.book(pid, body(seat, seat + 1, user="cat"), None)  # neither was asked
    assert refused.value.seat_ids == [seat]
    assert system.metrics.counted.count(("BookingRefused", strategy)) == 2


def test_the_memory_lapses_and_the_store_is_asked_again(system: Offline) -> None:
    system.recently_taken.ttl_seconds = 0.25
    performance = system.new_performance("redis_async")
    pid, seat = performance.performance_id, performance.seat_ids[0]
    system.booking_service.book(pid, body(seat), None)
    with pytest.raises(SeatUnavailable):
        system.booking_service.book(pid, body(seat, user="bob"), None)
    system.clock.advance(0.3)
    system.redis_down()
    with pytest.raises(ServiceUnavailable):  # Redis was asked: it is down
        system.booking_service.book(pid, body(seat, user="cat"), None)


def test_a_cancel_forgets_its_seats_so_this_process_sells_them_again_at_once(system: Offline) -> None:
    system.recently_taken.ttl_seconds = 0.25
    performance = system.new_performance("redis_async")
    pid, seat = performance.performance_id, performance.seat_ids[0]
    first = system.booking_service.book(pid, body(seat), None)
    with pytest.raises(SeatUnavailable):
        system.booking_service.book(pid, body(seat, user="bob"), None)
    system.booking_service.cancel(first.booking_id, "ann")
    again = system.booking_service.book(pid, body(seat, user="bob"), None)
    assert (again.user_id, again.seat_ids) == ("bob", (seat,))


def test_a_retry_refused_from_memory_still_gets_its_first_booking_back(
    system: Offline, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The memory keeps the holder each refusal named: a retry whose idempotency record is gone, and whose
    first attempt holds the seat, is answered with that booking, as a refusal from the store would be."""
    system.recently_taken.ttl_seconds = 0.25
    performance = system.new_performance("redis_async")
    pid, seat = performance.performance_id, performance.seat_ids[0]
    first = system.booking_service.book(pid, body(seat), "key-1")
    with pytest.raises(SeatUnavailable):
        system.booking_service.book(pid, body(seat, user="bob"), None)
    for key in system.redis.scan_iter(match="t:idem*"):
        system.redis.delete(key)
    takes = []
    take = system.seat_store.reserve
    monkeypatch.setattr(system.seat_store, "reserve", lambda record: takes.append(record) or take(record))
    again = system.booking_service.book(pid, body(seat), "key-1")
    assert again.booking_id == first.booking_id
    assert takes == [], "answered from the memory and MySQL, without a take"


def decide_last(system: Offline, strategy: str) -> None:
    """Run the last request of an asynchronous strategy through its consumer, as the queue or stream would."""
    if strategy == "redis_async":
        system.deliver(system.booking_queue)
    elif strategy == "fifo_partition":
        system.deliver(system.fifo_queue)
    elif strategy == "stream_state":
        entry = system.ledger.decide(parse_stream_command(system.request_stream.data()[-1]))
        assert entry is not None
        system.persister.persist(entry)


@pytest.mark.parametrize("strategy", SYNCHRONOUS + ASYNCHRONOUS)
def test_a_hold_offline_is_held_then_given_back_at_its_deadline(system: Offline, strategy: str) -> None:
    """The hold's story on every strategy with no server (the fake MySQL, fakeredis running the Lua): HELD;
    at the deadline its seat goes to the next request at once, and a late confirm finds it EXPIRED."""
    performance = system.new_performance(strategy)
    seat = performance.seat_ids[0]
    hold = system.booking_service.book(performance.performance_id, {**body(seat), "hold": True}, None)
    decide_last(system, strategy)
    assert system.booking_service.get(hold.booking_id).status is BookingStatus.HELD
    assert system.seat_states(performance)[seat] == f"H:{hold.booking_id}"
    system.clock.advance(600)
    assert system.booking_service.get(hold.booking_id).status is BookingStatus.EXPIRED
    newcomer = system.booking_service.book(performance.performance_id, body(seat, user="bob"), None)
    decide_last(system, strategy)
    assert system.booking_service.get(newcomer.booking_id).status is BookingStatus.CONFIRMED
    assert system.seat_states(performance)[seat] == f"B:{newcomer.booking_id}"
    with pytest.raises(HoldExpired):
        system.booking_service.confirm(hold.booking_id, "ann", {"payment_reference": "late"})
    assert system.bookings.get(hold.booking_id).status is BookingStatus.EXPIRED


@pytest.mark.parametrize("strategy", [*SYNCHRONOUS, "redis_async", "fifo_partition"])
def test_a_refusal_by_a_hold_is_remembered_no_longer_than_the_hold_lasts(
    system: Offline, strategy: str
) -> None:
    """With the refusal memory on (0.25 s), a seat refused 0.1 s before its hold's deadline is refused from
    memory for those 0.1 s only: at the deadline it goes to the next request at once, as api.md promises."""
    system.recently_taken.ttl_seconds = 0.25
    performance = system.new_performance(strategy)
    seat = performance.seat_ids[0]
    hold = system.booking_service.book(performance.performance_id, {**body(seat), "hold": True}, None)
    decide_last(system, strategy)
    system.clock.advance(600 - 0.1)
    with pytest.raises(SeatUnavailable):
        system.booking_service.book(performance.performance_id, body(seat, user="bob"), None)
    assert system.recently_taken.taken_among(performance.performance_id, [seat]) == {seat: hold.booking_id}
    system.clock.advance(0.1)
    assert system.recently_taken.taken_among(performance.performance_id, [seat]) == {}
    newcomer = system.booking_service.book(performance.performance_id, body(seat, user="bob"), None)
    decide_last(system, strategy)
    assert system.booking_service.get(newcomer.booking_id).status is BookingStatus.CONFIRMED


def test_stream_state_lets_go_of_seats_it_chose_for_a_booking_refused_for_the_limit(system: Offline) -> None:
    """The ledger chooses the best available seats; MySQL then refuses the booking (the user is at the limit
    per person) and it ends REJECTED with no seats: the ledger is still told to let go of the seats it
    chose (the release is sent with the ledger's seats, not the booking's empty list)."""
    system.bookings.max_seats_per_user = 1
    performance = system.new_performance("stream_state")
    section = performance.sections[0]
    first = system.booking_service.book(performance.performance_id, body(performance.seat_ids[-1]), None)
    decide_last(system, "stream_state")
    assert system.booking_service.get(first.booking_id).status is BookingStatus.CONFIRMED
    wanted = {"user_id": "ann", "section_id": section.section_id, "count": 1}
    refused = system.booking_service.book(performance.performance_id, wanted, None)
    decide_last(system, "stream_state")
    after = system.booking_service.get(refused.booking_id)
    assert (after.status, after.reason, after.seat_ids) == (BookingStatus.REJECTED, "USER_LIMIT", ())
    chosen = section.first_seat_id
    assert system.ledger.holder(performance.performance_id, chosen) == refused.booking_id
    release = parse_stream_command(system.request_stream.data()[-1])
    assert (release.booking_id, release.seat_ids) == (refused.booking_id, (chosen,))
    system.ledger.decide(release)
    assert system.ledger.holder(performance.performance_id, chosen) is None


def test_a_best_available_request_delivered_again_is_decided_with_the_seats_chosen_the_first_time(
    system: Offline,
) -> None:
    """At-least-once delivery: the ledger re-emits its decision for a request it has decided. A best available
    request names no seats, so the decision must carry the seats the ledger chose, not the request's none."""
    performance = system.new_performance("stream_state")
    section = performance.sections[0]
    wanted = {"user_id": "ann", "section_id": section.section_id, "count": 2}
    booking = system.booking_service.book(performance.performance_id, wanted, None)
    command = parse_stream_command(system.request_stream.data()[-1])
    first = system.ledger.decide(command)
    again = system.ledger.decide(command)
    assert first is not None and again is not None
    assert first.seat_ids == again.seat_ids == (section.first_seat_id, section.first_seat_id + 1)
    system.persister.persist(again)  # as if the first entry never reached the changelog
    assert system.booking_service.get(booking.booking_id).seat_ids == first.seat_ids
