"""What every BookingStore (services/ports.py) must do, as tests: the in-memory fake runs them in
tests/unit/test_booking_store_contract.py, MariaDB's repository in
tests/integration/test_booking_store_contract.py, so the fake the unit tests lean on is held to what MySQL
really does.

A subclass provides two fixtures: `store` (a BookingStore that is also a ReconcileStore) and `seats` (a
performance id and four seat ids of it that exist and that no booking holds).
"""

from __future__ import annotations

import time

import pytest

from chalicelib.domain.booking_ids import mint
from chalicelib.domain.errors import BookingExists, IdempotencyKeyTaken, SeatAlreadyBooked
from chalicelib.domain.models import Booking, BookingStatus, ReconcileEntry

PENDING, CONFIRMED, FAILED = BookingStatus.PENDING, BookingStatus.CONFIRMED, BookingStatus.FAILED


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
