"""What every BookingStore (services/ports.py) must do, as tests: the in-memory fake runs them in
tests/unit/test_booking_store_contract.py, MariaDB's repository in
tests/integration/test_booking_store_contract.py, so the fake the unit tests lean on is held to what MySQL
really does.

A subclass provides two fixtures: `store` (a BookingStore that is also a ReconcileStore) and `seats` (a
performance id and four seat ids of it that exist and that no booking holds); HoldsContract's a third.
"""

from __future__ import annotations

import dataclasses
import time

import pytest

from chalicelib.domain.booking_ids import mint
from chalicelib.domain.errors import BookingExists, IdempotencyKeyTaken, SeatAlreadyBooked, UserLimit
from chalicelib.domain.holds import HoldOutcome
from chalicelib.domain.models import Booking, BookingStatus, ReconcileEntry

PENDING, CONFIRMED, FAILED = BookingStatus.PENDING, BookingStatus.CONFIRMED, BookingStatus.FAILED
HELD = BookingStatus.HELD


def booking(seats, *indexes: int, user: str = "ann", status: BookingStatus = PENDING) -> Booking:
    performance_id, seat_ids = seats
    chosen = tuple(seat_ids[i] for i in indexes)
    return Booking(mint(performance_id), performance_id, user, chosen, status, "redis_async")


class BookingStoreContract:
    def test_a_journaled_hold_holds_its_seats(self, store, seats) -> None:
        held = booking(seats, 0, 1)
        store.insert(held, "key-1")
        assert store.get(held.booking_id) == held
        assert store.holders_of(held.seat_ids) == {s: (held.booking_id, PENDING) for s in held.seat_ids}
        assert store.active_seat_holders(held.performance_id) == store.holders_of(held.seat_ids)

    def test_the_unique_guard_refuses_a_held_seat_and_stores_nothing(self, store, seats) -> None:
        store.insert(booking(seats, 0))
        second = booking(seats, 0, 1, user="bob")
        with pytest.raises(SeatAlreadyBooked):
            store.insert(second)
        assert store.get(second.booking_id) is None

    def test_a_booking_id_is_stored_once(self, store, seats) -> None:
        first = booking(seats, 0)
        store.insert(first)
        with pytest.raises(BookingExists):
            store.insert(Booking(first.booking_id, first.performance_id, "ann", (seats[1][1],), FAILED, "x"))

    def test_an_idempotency_key_is_unique_per_user(self, store, seats) -> None:
        first = booking(seats, 0)
        store.insert(first, "same-key")
        with pytest.raises(IdempotencyKeyTaken) as taken:
            store.insert(booking(seats, 1), "same-key")
        assert taken.value.booking_id == first.booking_id
        store.insert(booking(seats, 2, user="bob"), "same-key")  # another user's key of the same name

    def test_settle_is_a_compare_and_set_from_pending(self, store, seats) -> None:
        held = booking(seats, 0)
        store.insert(held)
        failed = store.settle(held.booking_id, FAILED, "gave up")
        assert (failed.changed, failed.booking.status, failed.booking.reason) == (True, FAILED, "gave up")
        assert store.holders_of(held.seat_ids) == {}
        late = store.settle(held.booking_id, CONFIRMED)  # a redelivery after the give-up
        assert (late.changed, late.booking.status) == (False, FAILED)
        assert store.holders_of(held.seat_ids) == {}

    def test_settling_an_unknown_booking_changes_nothing(self, store, seats) -> None:
        settled = store.settle(mint(seats[0]), CONFIRMED)
        assert (settled.booking, settled.changed) == (None, False)

    def test_confirming_in_line_meets_the_guard_and_stays_pending(self, store, seats) -> None:
        store.insert(booking(seats, 1))
        in_line = booking(seats, 0, 1, user="bob")
        store.insert_in_line(in_line)
        assert in_line.booking_id not in {b for b, _ in store.holders_of(in_line.seat_ids).values()}
        with pytest.raises(SeatAlreadyBooked):
            store.settle(in_line.booking_id, CONFIRMED)
        assert store.get(in_line.booking_id).status is PENDING

    def test_decide_in_line_confirms_free_seats_and_rejects_taken_ones(self, store, seats) -> None:
        first, second = booking(seats, 0, 1), booking(seats, 1, 2, user="bob")
        store.insert_in_line(first)
        store.insert_in_line(second)
        assert store.decide_in_line(first.booking_id).booking.status is CONFIRMED
        rejected = store.decide_in_line(second.booking_id)
        assert (rejected.changed, rejected.booking.status) == (True, BookingStatus.REJECTED)
        assert rejected.booking.reason == f"seat(s) [{seats[1][1]}] were taken earlier in line"
        assert store.decide_in_line(second.booking_id).changed is False
        assert store.holders_of(seats[1]) == {s: (first.booking_id, CONFIRMED) for s in first.seat_ids}

    def test_cancel_frees_the_seats_of_an_active_booking_only(self, store, seats) -> None:
        sold = booking(seats, 0, status=CONFIRMED)
        store.insert(sold)
        before, after = store.cancel(sold.booking_id)
        assert (before.status, after.status) == (CONFIRMED, BookingStatus.CANCELLED)
        assert store.holders_of(sold.seat_ids) == {}
        assert store.cancel(sold.booking_id) == (after, None)

    def test_insert_if_seats_free_names_the_holders_and_stores_nothing(self, store, seats) -> None:
        holder = booking(seats, 0, status=CONFIRMED)
        store.insert(holder)
        late = booking(seats, 0, 1, user="bob", status=CONFIRMED)
        assert store.insert_if_seats_free(late) == {seats[1][0]: holder.booking_id}
        assert store.get(late.booking_id) is None
        free = booking(seats, 2, user="bob", status=CONFIRMED)
        assert store.insert_with_seat_row_locks(free) == {}
        assert store.get(free.booking_id) == free

    def test_the_reconcile_log_keeps_one_entry_per_action_and_booking(self, store, seats) -> None:
        held = booking(seats, 0)
        store.insert(held)
        entry = ReconcileEntry("ledger_release_pending", {"n": 1}, held.booking_id, held.performance_id)
        store.log_reconcile(entry)
        store.log_reconcile(entry)
        open_entries = store.open_reconcile_entries("ledger_release_pending", "ledger_release_resent")
        assert held.booking_id in open_entries
        store.log_reconcile(ReconcileEntry("ledger_release_resent", {}, held.booking_id, held.performance_id))
        open_entries = store.open_reconcile_entries("ledger_release_pending", "ledger_release_resent")
        assert held.booking_id not in open_entries

    def test_the_reconcile_lookups_find_pending_bookings_by_age(self, store, seats) -> None:
        held = booking(seats, 0)
        store.insert(held)
        later = time.time() + 60
        assert held.booking_id in [
            b.booking_id for b in store.pending_accepted_before(later, held.performance_id)
        ]
        assert store.pending_accepted_before(time.time() - 60, held.performance_id) == []
        assert store.statuses([held.booking_id, mint(held.performance_id)]) == {held.booking_id: PENDING}
        assert held.performance_id in store.recently_active_performances(60)


class HandClock:
    def __init__(self) -> None:
        self.now = 2_000_000_000.0

    def __call__(self) -> float:
        return self.now


def hold(seats, *indexes: int, until: float, user: str = "ann", status: BookingStatus = HELD) -> Booking:
    return dataclasses.replace(booking(seats, *indexes, user=user, status=status), expires_at=until)


class HoldsContract:
    """Holds, the limit per person and the best available (docs/api.md): what both stores must do. A subclass
    also provides `section`: the one-row section of the four seats."""

    @pytest.fixture()
    def clock(self, store) -> HandClock:
        store.clock = clock = HandClock()
        return clock

    def test_a_hold_holds_its_seats_until_its_deadline_then_gives_way_at_once(
        self, store, seats, clock
    ) -> None:
        expired: list[Booking] = []
        store.on_expired = expired.append
        held = hold(seats, 0, 1, until=clock.now + 10)
        store.insert(held)
        with pytest.raises(SeatAlreadyBooked):
            store.insert(booking(seats, 1, user="bob", status=CONFIRMED))
        clock.now += 10  # the deadline itself
        assert store.holders_of(held.seat_ids) == {}, "a lapsed hold holds nothing, expired or not yet"
        assert store.active_seat_holders(held.performance_id) == {}
        newcomer = booking(seats, 1, user="bob", status=CONFIRMED)
        store.insert(newcomer)  # no sweep in between
        assert store.get(held.booking_id).status is BookingStatus.EXPIRED
        assert [b.booking_id for b in expired] == [held.booking_id]
        assert store.holders_of(seats[1]) == {seats[1][1]: (newcomer.booking_id, CONFIRMED)}
        assert store.lapsed_holds() == []

    def test_a_confirm_and_an_extension_change_a_live_hold_only(self, store, seats, clock) -> None:
        held = hold(seats, 0, until=clock.now + 10)
        store.insert(held)
        extended = store.extend_hold(held.booking_id, 100, max_extensions=1)
        assert extended.outcome is HoldOutcome.CHANGED and extended.booking.extensions == 1
        assert extended.booking.expires_at == pytest.approx(clock.now + 100)
        assert store.extend_hold(held.booking_id, 100, max_extensions=1).outcome is HoldOutcome.AT_LIMIT
        confirmed = store.confirm_hold(held.booking_id, "pay-1")
        assert confirmed.outcome is HoldOutcome.CHANGED
        assert (confirmed.booking.status, confirmed.booking.payment_reference) == (CONFIRMED, "pay-1")
        assert store.confirm_hold(held.booking_id, "pay-1").outcome is HoldOutcome.UNCHANGED
        assert store.confirm_hold(held.booking_id, "pay-2").outcome is HoldOutcome.NOT_HELD
        assert store.extend_hold(held.booking_id, 100, max_extensions=5).outcome is HoldOutcome.NOT_HELD

        late = hold(seats, 1, until=clock.now + 10, user="bob")
        store.insert(late)
        clock.now += 10
        lapsed = store.confirm_hold(late.booking_id, "pay-3")
        assert (lapsed.outcome, lapsed.expired, lapsed.booking.status) == (
            HoldOutcome.LAPSED,
            True,
            BookingStatus.EXPIRED,
        )
        again = store.extend_hold(late.booking_id, 100, max_extensions=5)
        assert (again.outcome, again.expired) == (HoldOutcome.LAPSED, False), "expired once, by the first"
        assert store.holders_of(late.seat_ids) == {}
        assert store.confirm_hold("0" * 26, "pay").booking is None

    def test_the_sweeper_expires_each_lapsed_hold_once(self, store, seats, clock) -> None:
        first = hold(seats, 0, until=clock.now + 5)
        second = hold(seats, 1, until=clock.now + 10, status=PENDING)  # a journaled hold not yet settled
        store.insert(first)
        store.insert(second)
        assert store.lapsed_holds() == []
        clock.now += 10
        assert [b.booking_id for b in store.lapsed_holds()] == [first.booking_id, second.booking_id]
        assert store.expire(first.booking_id).changed
        assert not store.expire(first.booking_id).changed
        assert store.get(first.booking_id).status is BookingStatus.EXPIRED
        assert [b.booking_id for b in store.lapsed_holds()] == [second.booking_id]

    def test_settling_a_hold_makes_it_held_or_expired_if_late(self, store, seats, clock) -> None:
        on_time = hold(seats, 0, until=clock.now + 10, status=PENDING)
        late = hold(seats, 1, until=clock.now + 5, status=PENDING)
        store.insert(on_time)
        store.insert(late)
        clock.now += 5
        assert store.settle(on_time.booking_id, CONFIRMED).booking.status is BookingStatus.HELD
        assert store.settle(late.booking_id, CONFIRMED).booking.status is BookingStatus.EXPIRED
        assert set(store.holders_of(seats[1])) == {seats[1][0]}
        assert store.cancel(on_time.booking_id)[1].status is BookingStatus.CANCELLED

    def test_a_user_holds_at_most_the_limit(self, store, seats, clock) -> None:
        store.max_seats_per_user = 3
        store.insert(booking(seats, 0, 1, status=CONFIRMED))
        store.insert(hold(seats, 2, until=clock.now + 5))
        with pytest.raises(UserLimit) as refused:
            store.insert(booking(seats, 3, status=CONFIRMED))
        assert refused.value.remaining == 0
        store.insert(booking(seats, 3, user="bob", status=CONFIRMED))  # another user is not limited
        clock.now += 5  # ann's hold lapses: it counts no more, and its seat is free
        store.insert(booking(seats, 2, status=CONFIRMED))

    def test_the_best_available_is_chosen_and_stored_in_one_step(self, store, seats, section, clock) -> None:
        first = store.insert_best_available(booking(seats, status=CONFIRMED), section, 2)
        assert first is not None and first.seat_ids == seats[1][:2]
        assert store.get(first.booking_id).seat_ids == seats[1][:2]
        second = store.insert_best_available(booking(seats, user="bob", status=CONFIRMED), section, 2)
        assert second is not None and second.seat_ids == seats[1][2:]
        assert store.insert_best_available(booking(seats, user="cy", status=CONFIRMED), section, 1) is None
