"""`stream_state`'s seat ledger on a real RocksDB store (rocksdict, in a temporary directory). The changelog
here is an in-memory stream with Kinesis' read contract (tests/support/fakes.py); the integration tests run
it on Kinesis (moto)."""

from __future__ import annotations

import pytest

from chalicelib.adapters.rocks_state import RocksKeyValueStore
from chalicelib.domain.messages import (
    BookingRequested,
    LedgerEntry,
    LedgerOutcome,
    SeatsReleaseRequested,
    parse_stream_command,
)
from chalicelib.strategies.stream_state import SeatLedger
from tests.support.fakes import RecordingStream

PERFORMANCE = 7


def request(booking_id: str, *seats: int) -> BookingRequested:
    return BookingRequested(booking_id, PERFORMANCE, f"user-{booking_id}", seats, "stream_state")


@pytest.fixture()
def changelog() -> RecordingStream:
    return RecordingStream()


@pytest.fixture()
def open_ledger(tmp_path, changelog):
    opened: list[RocksKeyValueStore] = []

    def make(directory: str = "a") -> SeatLedger:
        def open_store() -> RocksKeyValueStore:
            store = RocksKeyValueStore(str(tmp_path / directory))
            opened.append(store)
            return store

        return SeatLedger(open_store, changelog)

    yield make
    for store in opened:
        store.close()


def decide_and_log(ledger: SeatLedger, changelog: RecordingStream, command) -> LedgerEntry | None:
    """What the processor does per record: decide, then append the decision to the changelog."""
    entry = ledger.decide(command)
    if entry is not None:
        changelog.put(entry.to_json(), "p")
    return entry


def test_first_request_in_line_gets_the_seats_and_overlapping_later_ones_are_rejected(
    open_ledger, changelog
) -> None:
    ledger = open_ledger()
    outcomes = [
        decide_and_log(ledger, changelog, request(b, *seats)).outcome
        for b, seats in [("b1", (1, 2)), ("b2", (2, 3)), ("b3", (3, 4)), ("b4", (5,))]
    ]
    assert outcomes == ["CONFIRMED", "REJECTED", "CONFIRMED", "CONFIRMED"]
    assert [ledger.holder(PERFORMANCE, s) for s in (1, 2, 3, 4, 5)] == ["b1", "b1", "b3", "b3", "b4"]
    rejected = LedgerEntry.from_json(changelog.data()[1])
    assert rejected.reason == "seat(s) [2] were taken earlier in line"


def test_a_redelivered_request_re_emits_the_same_decision(open_ledger, changelog) -> None:
    ledger = open_ledger()
    first = decide_and_log(ledger, changelog, request("b1", 1))
    decide_and_log(ledger, changelog, request("b2", 1))
    again = ledger.decide(request("b1", 1))
    assert again == first, "a crash between deciding and checkpointing must not change the decision"
    assert ledger.decide(request("b2", 1)).outcome == LedgerOutcome.REJECTED


def test_release_frees_only_the_releasing_bookings_seats_and_blocks_a_late_redelivery(
    open_ledger, changelog
) -> None:
    ledger = open_ledger()
    decide_and_log(ledger, changelog, request("b1", 1, 2))
    release = SeatsReleaseRequested("b1", PERFORMANCE, "user-b1", (1, 2))
    assert decide_and_log(ledger, changelog, release).outcome == LedgerOutcome.RELEASED
    assert decide_and_log(ledger, changelog, request("b2", 2)).outcome == LedgerOutcome.CONFIRMED
    # A stale release of b1 (redelivered) must not free b2's seat.
    decide_and_log(ledger, changelog, release)
    assert ledger.holder(PERFORMANCE, 2) == "b2"
    assert ledger.decide(request("b1", 1, 2)) is None, "a released booking is never decided again"


def test_a_release_naming_the_real_holders_corrects_the_ledger(open_ledger, changelog) -> None:
    ledger = open_ledger()
    decide_and_log(ledger, changelog, request("b1", 1))
    # MySQL's guard refused b1 because b9 (decided by another partition) holds seat 1.
    decide_and_log(ledger, changelog, SeatsReleaseRequested("b1", PERFORMANCE, "user-b1", (1,), ((1, "b9"),)))
    assert ledger.holder(PERFORMANCE, 1) == "b9"
    assert decide_and_log(ledger, changelog, request("b2", 1)).outcome == LedgerOutcome.REJECTED


@pytest.mark.parametrize("cancel_first", [True, False], ids=["cancel-then-guard", "guard-then-cancel"])
def test_a_holder_named_by_a_guard_refusal_never_outlives_its_own_release(
    open_ledger, changelog, cancel_first
) -> None:
    """Issue 13: MySQL named b9 as seat 1's holder at the moment the guard refused b1; b9 was cancelled before
    the ledger applied that refusal. Applied in either order, seat 1 ends free (the stale holder used to keep
    it refused until the changelog aged out), on this ledger and on one rebuilt from the changelog."""
    ledger = open_ledger()
    decide_and_log(ledger, changelog, request("b9", 1))
    cancel = SeatsReleaseRequested("b9", PERFORMANCE, "user-b9", (1,))
    refusal = SeatsReleaseRequested("b1", PERFORMANCE, "user-b1", (1,), ((1, "b9"),))
    for command in (cancel, refusal) if cancel_first else (refusal, cancel):
        decide_and_log(ledger, changelog, command)

    assert ledger.holder(PERFORMANCE, 1) is None
    rebuilt = open_ledger("rebuilt")
    rebuilt.catch_up()
    assert rebuilt.holder(PERFORMANCE, 1) is None
    assert decide_and_log(ledger, changelog, request("b2", 1)).outcome == LedgerOutcome.CONFIRMED


def test_a_new_store_is_rebuilt_from_the_changelog_and_decides_as_the_old_one_would(
    open_ledger, changelog
) -> None:
    old = open_ledger("old")
    for b, seats in [("b1", (1, 2)), ("b2", (2, 3)), ("b3", (3,))]:
        decide_and_log(old, changelog, request(b, *seats))
    decide_and_log(old, changelog, SeatsReleaseRequested("b1", PERFORMANCE, "user-b1", (1, 2)))

    new = open_ledger("new")  # an empty directory: a new container, or a wiped /tmp
    assert new.catch_up() == 4
    assert [new.holder(PERFORMANCE, s) for s in (1, 2, 3)] == [None, None, "b3"]
    assert new.decide(request("b2", 2, 3)).outcome == LedgerOutcome.REJECTED  # re-emits its decision
    assert new.decide(request("b4", 2)).outcome == LedgerOutcome.CONFIRMED
    assert new.decide(request("b5", 3)).outcome == LedgerOutcome.REJECTED


def test_catch_up_resumes_where_the_store_left_off_after_a_restart(open_ledger, changelog) -> None:
    writer = open_ledger("writer")
    decide_and_log(writer, changelog, request("b1", 1))
    reader = open_ledger("reader")
    assert reader.catch_up() == 1
    decide_and_log(writer, changelog, request("b2", 2))
    assert reader.catch_up() == 1, "only what it has not seen"
    assert reader.catch_up() == 0
    assert reader.holder(PERFORMANCE, 2) == "b2"


def test_positions_survive_reopening_the_store(tmp_path, changelog) -> None:
    def open_store() -> RocksKeyValueStore:
        return RocksKeyValueStore(str(tmp_path / "kept"))

    for seat in (1, 2, 3):
        changelog.put(
            LedgerEntry(f"b{seat}", PERFORMANCE, "u", (seat,), LedgerOutcome.CONFIRMED).to_json(), "p"
        )
    first = SeatLedger(open_store, changelog)
    assert first.catch_up() == 3
    first._store.close()
    again = SeatLedger(open_store, changelog)
    assert again.catch_up() == 0, "a restarted process on the same directory replays nothing twice"
    assert again.holder(PERFORMANCE, 3) == "b3"
    again._store.close()


def test_stream_commands_parse_back_and_garbage_is_refused() -> None:
    release = SeatsReleaseRequested("b1", PERFORMANCE, "u", (1, 2), ((2, "b7"),))
    assert parse_stream_command(release.to_json()) == release
    booking = request("b1", 1, 2)
    assert parse_stream_command(booking.to_json()) == booking
    with pytest.raises(ValueError):
        parse_stream_command('{"type": "booking.release", "booking_id": "b1"}')
    with pytest.raises(ValueError):
        LedgerEntry.from_json('{"type": "booking.decided", "outcome": "MAYBE"}')
