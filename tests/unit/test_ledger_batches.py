"""`stream_state`'s processor appends a batch's decisions in as few PutRecords as order allows: runs of
entries that commute (ledger.commuting_runs), one run after the other, since PutRecords keeps no order
within a call. Here on the in-memory stream and ledger store (tests/support/fakes.py)."""

from __future__ import annotations

import base64
import random

import pytest

from chalicelib.domain.errors import ServiceUnavailable
from chalicelib.domain.messages import (
    BookingRequested,
    LedgerEntry,
    LedgerOutcome,
    SeatsReleaseRequested,
)
from chalicelib.entrypoints.kinesis_batch import LedgerBatchHandler
from chalicelib.strategies.stream_state import SeatLedger
from chalicelib.strategies.stream_state.ledger import POSITIONS_KEY, commuting_runs
from tests.support.fakes import DictKeyValueStore, RecordingStream

PERFORMANCE = 7
KEY = "perf-7-section-1"


def request(booking_id: str, *seats: int) -> BookingRequested:
    return BookingRequested(booking_id, PERFORMANCE, f"user-{booking_id}", seats, "stream_state")


def release(booking_id: str, *seats: int, holders: tuple = ()) -> SeatsReleaseRequested:
    return SeatsReleaseRequested(booking_id, PERFORMANCE, f"user-{booking_id}", seats, holders)


def event(commands: list, first_sequence: int = 1) -> dict:
    return {
        "Records": [
            {
                "kinesis": {
                    "kinesisSchemaVersion": "1.0",
                    "partitionKey": KEY,
                    "sequenceNumber": str(first_sequence + i),
                    "data": base64.b64encode(command.to_json().encode()).decode(),
                    "approximateArrivalTimestamp": 1.0,
                },
                "eventSource": "aws:kinesis",
                "eventID": f"shardId-0:{first_sequence + i}",
                "eventSourceARN": "arn:aws:kinesis:us-east-1:1:stream/requests",
            }
            for i, command in enumerate(commands)
        ]
    }


class FlakyStream(RecordingStream):
    """The changelog, failing the put_many calls numbered in `failing` (1-based)."""

    def __init__(self, failing: set[int]) -> None:
        super().__init__()
        self.failing = failing
        self.attempts = 0

    def put_many(self, records):
        self.attempts += 1
        if self.attempts in self.failing:
            raise ServiceUnavailable("changelog unavailable")
        return super().put_many(records)


def handler_on(changelog: RecordingStream) -> tuple[LedgerBatchHandler, SeatLedger, DictKeyValueStore]:
    store = DictKeyValueStore()
    ledger = SeatLedger(lambda: store, changelog)
    return LedgerBatchHandler(ledger, changelog), ledger, store


def outcomes(changelog: RecordingStream) -> list[tuple[str, str]]:
    return [(e.booking_id, e.outcome) for e in map(LedgerEntry.from_json, changelog.data())]


def test_a_hot_sections_batch_is_one_call() -> None:
    changelog = RecordingStream()
    handler, _, _ = handler_on(changelog)
    commands = [request(f"b{i}", i % 12 + 1, i % 12 + 2) for i in range(40)]  # many clash: refusals
    assert handler(event(commands), None) == {"batchItemFailures": []}
    assert len(changelog.calls) == 1 and len(changelog.calls[0]) == 40
    confirmed = {b for b, outcome in outcomes(changelog) if outcome == LedgerOutcome.CONFIRMED}
    assert confirmed == {f"b{i}" for i in range(0, 12, 2)}, "first in line wins, as decided one by one"
    assert all(key == KEY for _, key in changelog.calls[0])


def test_entries_that_do_not_commute_go_in_successive_calls() -> None:
    changelog = RecordingStream()
    handler, ledger, _ = handler_on(changelog)
    commands = [request("a", 1), request("x", 2), release("a", 1), request("c", 1), request("y", 3)]
    assert handler(event(commands), None) == {"batchItemFailures": []}
    runs = [[LedgerEntry.from_json(data).booking_id for data, _ in call] for call in changelog.calls]
    # a's release reads seat 1 and a's outcome (a's confirmation must be in first); c takes seat 1 after it.
    assert runs == [["a", "x"], ["a"], ["c", "y"]]
    assert ledger.holder(PERFORMANCE, 1) == "c"


def test_a_run_that_cannot_be_written_is_retried_from_its_first_record() -> None:
    changelog = FlakyStream(failing={2})
    handler, _, _ = handler_on(changelog)
    commands = [request("a", 1), release("a", 1), request("c", 1), request("d", 2)]
    assert handler(event(commands), None) == {"batchItemFailures": [{"itemIdentifier": "2"}]}
    assert outcomes(changelog) == [("a", LedgerOutcome.CONFIRMED)], "nothing after the failed run is sent"
    # Lambda redelivers from record 2: the ledger re-emits what it decided, in the same order.
    assert handler(event(commands[1:], first_sequence=2), None) == {"batchItemFailures": []}
    assert outcomes(changelog) == [
        ("a", LedgerOutcome.CONFIRMED),
        ("a", LedgerOutcome.RELEASED),
        ("c", LedgerOutcome.CONFIRMED),
        ("d", LedgerOutcome.CONFIRMED),
    ]
    rebuilt = SeatLedger(DictKeyValueStore, changelog)
    rebuilt.catch_up()
    assert [rebuilt.holder(PERFORMANCE, seat) for seat in (1, 2)] == ["c", "d"]


def test_a_record_that_fails_to_be_decided_comes_after_the_decisions_before_it(monkeypatch) -> None:
    changelog = RecordingStream()
    handler, ledger, _ = handler_on(changelog)
    real_decide = ledger.decide

    def decide(command):
        if command.booking_id == "c":
            raise ServiceUnavailable("ledger store unavailable")
        return real_decide(command)

    monkeypatch.setattr(ledger, "decide", decide)
    commands = [request("a", 1), request("b", 2), request("c", 3), request("d", 4)]
    assert handler(event(commands), None) == {"batchItemFailures": [{"itemIdentifier": "3"}]}
    assert outcomes(changelog) == [("a", "CONFIRMED"), ("b", "CONFIRMED")]


@pytest.mark.parametrize("seed", range(30))
def test_replaying_every_run_in_any_order_rebuilds_the_ledger_decided_in_order(seed: int) -> None:
    """The property the batching rests on: entries of one run commute under replay."""
    rng = random.Random(seed)
    store = DictKeyValueStore()
    ledger = SeatLedger(lambda: store, RecordingStream())
    entries: list[LedgerEntry] = []
    booked: list[str] = []
    for i in range(60):
        if booked and rng.random() < 0.3:
            victim = rng.choice(booked)
            seats = tuple(rng.sample(range(1, 9), rng.randint(1, 3)))
            holders = ((seats[0], rng.choice(booked)),) if rng.random() < 0.3 else ()
            command = release(victim, *seats, holders=holders)
        else:
            command = request(f"b{i}", *rng.sample(range(1, 9), rng.randint(1, 3)))
            booked.append(command.booking_id)
        entry = ledger.decide(command)
        if entry is not None:
            entries.append(entry)
    runs = commuting_runs(entries, lambda entry: entry)
    assert sum(map(len, runs)) == len(entries)
    shuffled = RecordingStream()
    for run in runs:
        for entry in rng.sample(run, len(run)):
            shuffled.put(entry.to_json(), KEY)
    replayed_store = DictKeyValueStore()
    SeatLedger(lambda: replayed_store, shuffled).catch_up()
    without_positions = {k: v for k, v in replayed_store.values.items() if k != POSITIONS_KEY}
    assert without_positions == store.values
