"""The memory of seats just refused (services/recently_taken.py), on an injected clock."""

from __future__ import annotations

from chalicelib.services.recently_taken import RecentlyTaken
from tests.support.clock import FakeClock


def test_a_refused_seat_is_remembered_for_the_ttl_and_then_lapses() -> None:
    clock = FakeClock()
    memo = RecentlyTaken(0.25, clock=clock)
    memo.remember(7, [1, 2], {1: "01BOOKING"})
    assert memo.taken_among(7, [1, 2, 3]) == {1: "01BOOKING", 2: None}
    assert memo.taken_among(8, [1, 2]) == {}, "per performance"
    clock.advance(0.24)
    assert set(memo.taken_among(7, [1, 2])) == {1, 2}
    clock.advance(0.02)
    assert memo.taken_among(7, [1, 2]) == {}


def test_a_new_refusal_renews_the_memory_and_forget_drops_it_at_once() -> None:
    clock = FakeClock()
    memo = RecentlyTaken(0.25, clock=clock)
    memo.remember(7, [1, 2])
    clock.advance(0.2)
    memo.remember(7, [1])
    clock.advance(0.1)
    assert memo.taken_among(7, [1, 2]) == {1: None}
    memo.forget(7, [1])
    assert memo.taken_among(7, [1]) == {}


def test_a_ttl_of_zero_remembers_nothing() -> None:
    memo = RecentlyTaken(0)
    memo.remember(7, [1])
    assert memo.taken_among(7, [1]) == {}


def test_a_full_memory_drops_the_expired_seats_first_then_everything() -> None:
    clock = FakeClock()
    memo = RecentlyTaken(1.0, clock=clock, max_seats=3)
    memo.remember(7, [1, 2])
    clock.advance(2.0)
    memo.remember(7, [3])
    memo.remember(7, [4])  # full (3 entries): the two expired ones go
    assert memo.taken_among(7, [1, 2, 3, 4]) == {3: None, 4: None}
    memo.remember(7, [5])
    memo.remember(7, [6])  # full of live entries: all forgotten, then 6 remembered
    assert memo.taken_among(7, [3, 4, 5, 6]) == {6: None}
