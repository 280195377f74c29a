"""Holds on every strategy (real MariaDB, Redis, moto's SQS and Kinesis, the local pollers): a hold is HELD
until its `expires_at`, then its seats are free for the next request at once, before any sweep; confirm and
extend are the owner's; a confirm and an expiry that race have exactly one winner. Time is an injected clock
(every judge of a deadline reads it), never a wait."""

from __future__ import annotations

import random
import threading
from collections.abc import Callable, Iterator
from functools import partial

import pytest

from chalicelib.domain.best_available import choose_seats
from chalicelib.domain.errors import (
    ExtensionLimit,
    HoldExpired,
    NotCancellable,
    NotConfirmable,
    NotExtendable,
    NotFound,
    SeatUnavailable,
    UserLimit,
)
from chalicelib.domain.models import BestAvailable, Booking, BookingStatus, rfc3339
from chalicelib.domain.seat_holds import BookingRecord, ReserveResult

pytestmark = pytest.mark.timeout(120)
STRATEGIES = ["db_lock", "redis_lock", "redis_async", "fifo_partition", "stream_state"]
ASYNCHRONOUS = {"redis_async", "fifo_partition", "stream_state"}
START = 2_000_000_000.0  # 2033-05-18: far from the real clock, so nothing real can be mistaken for it


class HoldClock:
    """The wall clock every judge of a hold reads in these tests: moved by hand; a thread may be given a
    time of its own (`pin`), so two racers can each believe the deadline is on their side."""

    def __init__(self) -> None:
        self.now = START
        self._pinned: dict[int, float] = {}

    def __call__(self) -> float:
        return self._pinned.get(threading.get_ident(), self.now)

    def advance(self, seconds: float) -> None:
        self.now += seconds

    def pin(self, at: float) -> None:
        self._pinned[threading.get_ident()] = at


class Racer:
    """Runs one side of a race: its own time pinned, started with the others, its answer or error kept."""

    def __init__(self, clock: HoldClock, start: threading.Barrier, results: dict[str, object]) -> None:
        self._clock, self._start, self._results = clock, start, results

    def __call__(self, name: str, at: float, act: Callable[[], object]) -> None:
        self._clock.pin(at)
        self._start.wait()
        try:
            self._results[name] = act()
        except Exception as exc:  # the loser's answer is an error: kept and checked by the test
            self._results[name] = exc


@pytest.fixture()
def clock(services, monkeypatch) -> Iterator[HoldClock]:
    clock = HoldClock()
    for part in (services.booking_service, services.bookings, services.seat_store, services.ledger):
        monkeypatch.setattr(part, "clock", clock)
    yield clock


def hold_seconds(services) -> float:
    return services.settings.hold_seconds


def statuses(services, performance_id: int) -> dict[int, str]:
    seat_map = services.seat_state.seat_map(services.catalogue.performance(performance_id))
    return {seat["seat_id"]: seat["status"] for s in seat_map["sections"] for seat in s["seats"]}


def hold(services, drain, pid: int, user: str, seats: list[int], strategy: str) -> Booking:
    """A hold as its owner sees it once the strategy has decided: 201 HELD, or 202 PENDING then HELD."""
    answer = services.booking_service.book(pid, {"user_id": user, "seat_ids": seats, "hold": True}, None)
    expected_first = BookingStatus.PENDING if strategy in ASYNCHRONOUS else BookingStatus.HELD
    assert answer.status is expected_first
    assert answer.expires_at == services.booking_service.clock() + hold_seconds(services)
    assert answer.to_dict()["expires_at"] == rfc3339(answer.expires_at), "RFC 3339 in every answer"
    drain()
    return services.booking_service.get(answer.booking_id)


def buy(services, drain, pid: int, user: str, seats: list[int]) -> Booking | SeatUnavailable:
    """A purchase as its buyer sees it once decided: the booking, or the 409 (a refusal at once)."""
    try:
        answer = services.booking_service.book(pid, {"user_id": user, "seat_ids": seats}, None)
    except SeatUnavailable as refused:
        return refused
    drain()
    return services.booking_service.get(answer.booking_id)


def bought(outcome: Booking | SeatUnavailable) -> bool:
    return isinstance(outcome, Booking) and outcome.status is BookingStatus.CONFIRMED


def audit(sql, services, pid: int, holders: dict[int, str]) -> None:
    """MySQL's active seat rows are exactly `holders` (seat -> booking); no seat has two; Redis agrees."""
    active = sql(
        "SELECT seat_id, booking_id FROM booking_seats WHERE performance_id = %s AND active = 1", pid
    )
    assert len(active) == len({seat for seat, _ in active}), "a seat held twice"
    assert dict(active) == holders
    states = services.seat_store.seat_states(pid)
    shown = {seat: state[2:] for seat, state in states.items() if state != "0"}
    assert shown == holders, "the Redis seat map and MySQL disagree"


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_a_hold_is_held_then_confirmed_by_its_owner_once(
    strategy, services, new_performance, drain, sql, clock
) -> None:
    performance = new_performance(strategy=strategy, rows=1, seats_per_row=6)
    pid, first = performance["performance_id"], performance["sections"][0]["first_seat_id"]

    held = hold(services, drain, pid, "ann", [first, first + 1], strategy)
    assert held.status is BookingStatus.HELD
    assert held.expires_at == START + hold_seconds(services)
    assert {s: st for s, st in statuses(services, pid).items() if st != "AVAILABLE"} == {
        first: "HELD",
        first + 1: "HELD",
    }
    with pytest.raises(NotFound):  # not theirs: as if it did not exist
        services.booking_service.confirm(held.booking_id, "mallory", {"payment_reference": "pay-1"})

    clock.advance(hold_seconds(services) - 0.001)  # the last millisecond of the hold
    confirmed = services.booking_service.confirm(held.booking_id, "ann", {"payment_reference": "pay-1"})
    assert confirmed.status is BookingStatus.CONFIRMED and confirmed.payment_reference == "pay-1"
    again = services.booking_service.confirm(held.booking_id, "ann", {"payment_reference": "pay-1"})
    assert again == confirmed, "the same confirm again answers the same"
    with pytest.raises(NotConfirmable):
        services.booking_service.confirm(held.booking_id, "ann", {"payment_reference": "pay-2"})

    clock.advance(3600)  # a confirmed hold never lapses
    assert services.booking_service.get(held.booking_id).status is BookingStatus.CONFIRMED
    # The best available past the hold's old deadline: every decider knows it was confirmed (stream_state's
    # ledger too, told so in line), so the confirmed seats are never chosen.
    chosen = best(services, pid, "cy", new_section_id(services, pid), 2)
    drain()
    chosen = services.booking_service.get(chosen.booking_id)
    assert bought(chosen) and chosen.seat_ids == (first + 2, first + 3), chosen
    # The sweeper leaves a confirmed hold alone. (It sweeps the whole database: other tests' holds, made on
    # the real clock, are lapsed at this test's time; only this booking is looked at.)
    services.booking_service.sweep_lapsed_holds()
    assert services.booking_service.get(held.booking_id).status is BookingStatus.CONFIRMED
    assert statuses(services, pid)[first] == "BOOKED"
    holders = {first: held.booking_id, first + 1: held.booking_id}
    audit(sql, services, pid, {**holders, first + 2: chosen.booking_id, first + 3: chosen.booking_id})
    with pytest.raises(NotExtendable):
        services.booking_service.extend(held.booking_id, "ann")


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_a_lapsed_hold_frees_its_seats_at_once_and_the_sweeper_settles_the_rest(
    strategy, services, new_performance, drain, sql, clock
) -> None:
    performance = new_performance(strategy=strategy, rows=1, seats_per_row=6)
    pid, first = performance["performance_id"], performance["sections"][0]["first_seat_id"]
    held = hold(services, drain, pid, "ann", [first, first + 1], strategy)

    assert not bought(buy(services, drain, pid, "bob", [first + 1])), "held: refused (409, or REJECTED)"
    clock.advance(hold_seconds(services))  # the deadline itself: from here on the hold holds nothing
    assert services.booking_service.get(held.booking_id).status is BookingStatus.EXPIRED

    taken = buy(services, drain, pid, "bob", [first + 1])  # before any sweep
    assert bought(taken)
    with pytest.raises(HoldExpired):
        services.booking_service.confirm(held.booking_id, "ann", {"payment_reference": "late"})
    with pytest.raises(HoldExpired):
        services.booking_service.extend(held.booking_id, "ann")
    with pytest.raises(NotCancellable):
        services.booking_service.cancel(held.booking_id, "ann")

    services.booking_service.sweep_lapsed_holds()
    assert services.booking_service.get(held.booking_id).status is BookingStatus.EXPIRED
    drain()  # stream_state: the ledger's release, in line
    assert statuses(services, pid)[first] == "AVAILABLE", "the map shows the hold's other seat free"
    assert statuses(services, pid)[first + 1] == "BOOKED"
    audit(sql, services, pid, {first + 1: taken.booking_id})
    assert sql("SELECT status FROM bookings WHERE booking_id = %s", held.booking_id) == [("EXPIRED",)]

    again = buy(services, drain, pid, "cy", [first])
    assert bought(again)
    audit(sql, services, pid, {first: again.booking_id, first + 1: taken.booking_id})


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_a_hold_is_extended_at_most_the_allowed_times(
    strategy, services, new_performance, drain, sql, clock
) -> None:
    performance = new_performance(strategy=strategy, rows=1, seats_per_row=4)
    pid, first = performance["performance_id"], performance["sections"][0]["first_seat_id"]
    held = hold(services, drain, pid, "ann", [first], strategy)
    allowed = services.settings.hold_max_extensions

    with pytest.raises(NotFound):  # not theirs: as if it did not exist
        services.booking_service.extend(held.booking_id, "mallory")
    for n in range(1, allowed + 1):
        clock.advance(hold_seconds(services) - 1)
        extended = services.booking_service.extend(held.booking_id, "ann")
        assert extended.status is BookingStatus.HELD and extended.extensions == n
        assert extended.expires_at == clock.now + hold_seconds(services)
    with pytest.raises(ExtensionLimit):
        services.booking_service.extend(held.booking_id, "ann")

    clock.advance(hold_seconds(services) - 1)  # past every deadline but the last
    assert not bought(buy(services, drain, pid, "bob", [first]))
    # Where the seat map cannot refuse early (the best available names no seat), every decider knows of the
    # extension: stream_state's ledger too, which would otherwise choose the seat and meet MySQL's guard.
    section_id = new_section_id(services, pid)
    chosen = best(services, pid, "cy", section_id, 1)
    drain()
    chosen = services.booking_service.get(chosen.booking_id)
    assert bought(chosen) and chosen.seat_ids == (first + 1,), chosen
    audit(sql, services, pid, {first: held.booking_id, first + 1: chosen.booking_id})
    clock.advance(1)
    assert bought(buy(services, drain, pid, "bob", [first]))


def new_section_id(services, pid: int) -> int:
    return services.catalogue.performance(pid).sections[0].section_id


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_a_confirm_and_an_expiry_that_race_have_exactly_one_winner(
    strategy, services, new_performance, drain, sql, clock
) -> None:
    """Each round: the confirming thread's clock says the hold has a moment left, the sweeper's and the
    newcomer's that it has run out; they start together. Exactly one side wins, and the seats agree."""
    rounds = 6
    performance = new_performance(strategy=strategy, rows=1, seats_per_row=rounds)
    pid, first = performance["performance_id"], performance["sections"][0]["first_seat_id"]
    outcomes: list[str] = []
    for seat in range(first, first + rounds):
        held = hold(services, drain, pid, "ann", [seat], strategy)
        deadline = held.expires_at
        start = threading.Barrier(3)
        results: dict[str, object] = {}

        racer = Racer(clock, start, results)
        body = {"payment_reference": f"pay-{seat}"}
        threads = [
            threading.Thread(
                target=racer,
                args=(
                    "confirm",
                    deadline - 0.001,
                    partial(services.booking_service.confirm, held.booking_id, "ann", body),
                ),
            ),
            threading.Thread(
                target=racer, args=("sweep", deadline, services.booking_service.sweep_lapsed_holds)
            ),
            threading.Thread(
                target=racer,
                args=(
                    "newcomer",
                    deadline,
                    partial(services.booking_service.book, pid, {"user_id": "bob", "seat_ids": [seat]}, None),
                ),
            ),
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        clock.advance(0)  # threads' pins die with them; the main thread keeps the shared time
        drain()

        final = services.booking_service.get(held.booking_id)
        confirm = results["confirm"]
        if isinstance(confirm, Booking):
            assert final.status is BookingStatus.CONFIRMED and confirm.status is BookingStatus.CONFIRMED
            holder = held.booking_id
            outcomes.append("confirm")
        else:
            assert isinstance(confirm, HoldExpired | NotConfirmable), confirm
            assert final.status is BookingStatus.EXPIRED
            outcomes.append("expiry")
            newcomer = results["newcomer"]
            holder = newcomer.booking_id if isinstance(newcomer, Booking) else None
            if holder and services.booking_service.get(holder).status is not BookingStatus.CONFIRMED:
                holder = None
        rows = sql("SELECT booking_id FROM booking_seats WHERE seat_id = %s AND active = 1", seat)
        assert rows == ([(holder,)] if holder else []), f"seat {seat}: {rows} vs the winner {holder}"
    assert len(outcomes) == rounds


# --- a limit per person ------------------------------------------------------------------------------------
def attempt(services, pid: int, user: str, seats: list[int], hold_it: bool = False) -> Booking | Exception:
    try:
        body = {"user_id": user, "seat_ids": seats, "hold": hold_it}
        return services.booking_service.book(pid, body, None)
    except (SeatUnavailable, UserLimit) as refused:
        return refused


def user_seats(sql, pid: int, user: str) -> int:
    """Seats the user's bookings hold in MySQL (lapsed holds aside: these tests never pass a deadline)."""
    return sql(
        "SELECT COUNT(*) FROM booking_seats bs JOIN bookings b ON b.booking_id = bs.booking_id"
        " WHERE b.performance_id = %s AND b.user_id = %s AND bs.active = 1",
        pid,
        user,
    )[0][0]


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_a_user_holds_and_buys_at_most_the_limit_of_a_performance(
    strategy, services, new_performance, drain, sql, clock
) -> None:
    limit = services.settings.max_seats_per_user
    per_booking = services.settings.max_seats_per_booking
    performance = new_performance(strategy=strategy, rows=4, seats_per_row=per_booking, sections=2)
    pid = performance["performance_id"]
    seats = [
        s
        for section in performance["sections"]
        for s in range(section["first_seat_id"], section["last_seat_id"] + 1)
    ]
    chunks = [seats[i : i + per_booking] for i in range(0, len(seats), per_booking)]
    firsts = limit // per_booking
    made = [
        attempt(services, pid, "ann", chunk, hold_it=i % 2 == 0) for i, chunk in enumerate(chunks[:firsts])
    ]
    drain()
    assert all(services.booking_service.get(b.booking_id).status.holds_seats for b in made)

    over = attempt(services, pid, "ann", chunks[-1][:1])  # another section: the limit is per performance
    if strategy in ASYNCHRONOUS - {"redis_async"}:
        assert isinstance(over, Booking) and over.status is BookingStatus.PENDING, "decided in line"
        drain()
        decided = services.booking_service.get(over.booking_id)
        assert (decided.status, decided.reason) == (BookingStatus.REJECTED, "USER_LIMIT")
    else:
        assert isinstance(over, UserLimit) and over.extra["remaining"] == 0, over
    assert user_seats(sql, pid, "ann") == limit
    assert isinstance(attempt(services, pid, "bob", chunks[-1][:1]), Booking), "others are not limited"
    drain()

    services.booking_service.cancel(made[0].booking_id, "ann")
    drain()
    again = attempt(services, pid, "ann", chunks[-2])
    assert isinstance(again, Booking)
    drain()
    assert services.booking_service.get(again.booking_id).status is BookingStatus.CONFIRMED
    assert user_seats(sql, pid, "ann") == limit


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_one_users_parallel_requests_never_pass_the_limit(
    strategy, services, new_performance, drain, sql, clock
) -> None:
    """Sixteen requests of two seats each, all at once, from one user, for distinct free seats: the user
    ends with exactly the limit (every request is counted after the one before it, never beside it)."""
    limit = services.settings.max_seats_per_user
    performance = new_performance(strategy=strategy, rows=4, seats_per_row=8, sections=2)
    pid = performance["performance_id"]
    seats = [
        s
        for section in performance["sections"]
        for s in range(section["first_seat_id"], section["last_seat_id"] + 1)
    ]
    pairs = [seats[i : i + 2] for i in range(0, 32, 2)]
    start = threading.Barrier(len(pairs))
    answers: list[Booking | Exception] = []

    def request(pair: list[int]) -> None:
        start.wait()
        answers.append(attempt(services, pid, "ann", pair, hold_it=pair[0] % 2 == 0))

    threads = [threading.Thread(target=request, args=(pair,)) for pair in pairs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    drain()

    assert not [a for a in answers if isinstance(a, SeatUnavailable)], "distinct free seats: no seat refusal"
    assert user_seats(sql, pid, "ann") == limit
    held = [
        a
        for a in answers
        if isinstance(a, Booking) and services.booking_service.get(a.booking_id).status.holds_seats
    ]
    assert sum(len(b.seat_ids) for b in held) == limit
    states = services.seat_store.seat_states(pid)
    assert sorted(s for s, state in states.items() if state != "0") == sorted(
        s for b in held for s in b.seat_ids
    )


# --- best available ---------------------------------------------------------------------------------------
def best(services, pid: int, user: str, section_id: int, count: int, hold_it: bool = False):
    body = {"user_id": user, "section_id": section_id, "count": count, "hold": hold_it}
    try:
        return services.booking_service.book(pid, body, None)
    except SeatUnavailable as refused:
        return refused


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_best_available_seats_are_side_by_side_and_strand_no_single_seat(
    strategy, services, new_performance, drain, sql, clock
) -> None:
    performance = new_performance(strategy=strategy, rows=2, seats_per_row=6)
    pid, section = performance["performance_id"], performance["sections"][0]
    first = section["first_seat_id"]
    row1, row2 = list(range(first, first + 6)), list(range(first + 6, first + 12))
    buy(services, drain, pid, "early", [row1[0]])  # row 1: seat 1 taken, 2..6 free

    two = best(services, pid, "ann", section["section_id"], 2, hold_it=True)
    drain()
    two = services.booking_service.get(two.booking_id)
    assert two.seat_ids == (row1[1], row1[2]), "row 1, from the run's end: leaves 4-6 together"
    assert two.status is BookingStatus.HELD

    four = best(services, pid, "bob", section["section_id"], 4)
    drain()
    four = services.booking_service.get(four.booking_id)
    assert four.seat_ids == tuple(row2[:4]), "row 1's three free seats are too few side by side"
    assert four.status is BookingStatus.CONFIRMED

    split = best(services, pid, "cy", section["section_id"], 4)  # 3 left in row 1, 2 in row 2
    drain()
    split = services.booking_service.get(split.booking_id)
    assert split.seat_ids == (row1[3], row1[4], row1[5], row2[4]), "the fewest rows: three and one"

    none = best(services, pid, "dee", section["section_id"], 2)  # one seat left
    drain()
    if isinstance(none, SeatUnavailable):
        assert strategy not in ASYNCHRONOUS - {"redis_async"}
    else:
        refused = services.booking_service.get(none.booking_id)
        assert refused.status is BookingStatus.REJECTED and refused.seat_ids == ()
    holders = {s: b.booking_id for b in (two, four, split) for s in b.seat_ids}
    early = sql("SELECT booking_id FROM bookings WHERE performance_id = %s AND user_id = 'early'", pid)[0][0]
    audit(sql, services, pid, {**holders, row1[0]: early})


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_two_users_race_for_the_last_pair_side_by_side_and_exactly_one_gets_it(
    strategy, services, new_performance, drain, sql, clock
) -> None:
    performance = new_performance(strategy=strategy, rows=1, seats_per_row=4)
    pid, section = performance["performance_id"], performance["sections"][0]
    first = section["first_seat_id"]
    buy(services, drain, pid, "early", [first, first + 1])  # the last pair: seats 3-4
    start = threading.Barrier(2)
    answers: dict[str, object] = {}

    def request(user: str) -> None:
        start.wait()
        answers[user] = best(services, pid, user, section["section_id"], 2)

    threads = [threading.Thread(target=request, args=(user,)) for user in ("ann", "bob")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    drain()

    winners = [
        answer
        for answer in answers.values()
        if isinstance(answer, Booking) and bought(services.booking_service.get(answer.booking_id))
    ]
    assert len(winners) == 1, answers
    assert services.booking_service.get(winners[0].booking_id).seat_ids == (first + 2, first + 3)
    early = sql("SELECT booking_id FROM bookings WHERE performance_id = %s AND user_id = 'early'", pid)[0][0]
    audit(
        sql,
        services,
        pid,
        {first: early, first + 1: early, first + 2: winners[0].booking_id, first + 3: winners[0].booking_id},
    )


def test_the_take_script_chooses_the_best_available_as_the_domain_does(services, new_performance) -> None:
    """redis_async chooses in Lua (reserve_seats.lua), the others with domain/best_available.py: the same
    seats for the same map, over random maps (lapsed holds counted free) and counts."""
    rng = random.Random(17)
    performance = new_performance(strategy="redis_async", rows=4, seats_per_row=7)
    pid = performance["performance_id"]
    section = services.catalogue.performance(pid).sections[0]
    seats = list(range(section.first_seat_id, section.last_seat_id + 1))
    services.seat_state.publish(services.catalogue.performance(pid))
    for trial in range(60):
        states = services.seat_store.seat_states(pid)
        wanted = {seat: rng.choice(["0", "0", "0", "B:x", "H:y", "H:lapsed"]) for seat in seats}
        services.seat_store.replace(pid, [(seat, states[seat], wanted[seat]) for seat in seats])
        services.seat_store._client.hset(
            services.seat_store.holds_key(pid), mapping={"lapsed": 1, "y": 10**15}
        )
        free = {seat for seat, state in wanted.items() if state in ("0", "H:lapsed")}
        count = rng.randint(1, 4)
        record = BookingRecord(f"T{trial}", pid, "u", (), "redis_async", BookingStatus.PENDING)
        outcome = services.seat_store.reserve(record, BestAvailable(section, count))
        expected = choose_seats(section, free, count)
        if expected is None:
            assert outcome.result is ReserveResult.UNAVAILABLE and outcome.seat_ids == ()
        else:
            assert outcome.result is ReserveResult.RESERVED and outcome.seat_ids == expected, (trial, count)
            services.seat_store.release(record.booking_id, pid, outcome.seat_ids)
        services.seat_store.delete_record(record.booking_id, pid)
