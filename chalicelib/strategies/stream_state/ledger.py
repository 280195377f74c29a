"""`stream_state`'s processor state: the seat ledger (RocksDB), a cache of the changelog (see __init__)."""

from __future__ import annotations

import dataclasses
import json
import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from chalicelib.domain.best_available import choose_seats
from chalicelib.domain.messages import (
    BookingRequested,
    HoldDeadlineChanged,
    LedgerEntry,
    LedgerOutcome,
    SeatsReleaseRequested,
    StreamCommand,
)
from chalicelib.services.ports import KeyValueStore, RecordStream

log = logging.getLogger(__name__)

POSITIONS_KEY = "changelog-positions"
T = TypeVar("T")


def _seat_key(performance_id: int, seat_id: int) -> str:
    return f"seat:{performance_id}:{seat_id}"


def _booking_key(booking_id: str) -> str:
    return f"booking:{booking_id}"


def _deadline_key(booking_id: str) -> str:
    """A hold's deadline (epoch ms): from then on the ledger gives its seats to the next request."""
    return f"expires:{booking_id}"


class SeatLedger:
    """Seat -> holding booking, booking -> outcome, and how far the changelog has been read: the processor's
    embedded state. Thread-safe: shard workers of one process share it (RocksDB has one opener per dir)."""

    def __init__(
        self,
        open_store: Callable[[], KeyValueStore],
        changelog: RecordStream,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._open_store = open_store
        self.clock = clock
        self._changelog = changelog
        self._store: KeyValueStore | None = None
        self._positions: dict[str, str] = {}
        self._lock = threading.RLock()
        self.replayed_entries = 0

    def catch_up(self) -> int:
        """Apply the changelog entries this store has not seen (all of them for a new store) -> count."""
        with self._lock:
            store = self._opened()
            fresh = not self._positions
            applied = 0
            for shard_id, sequence, data in self._changelog.read_since(self._positions):
                self._apply(store, LedgerEntry.from_json(data), (shard_id, sequence))
                applied += 1
            self.replayed_entries += applied
            if fresh and applied:
                log.info("seat ledger: rebuilt from %d changelog entries", applied)
            return applied

    def decide(self, command: StreamCommand) -> LedgerEntry | None:
        """Decide one command against the ledger and apply it -> the changelog entry to append (None: no
        change to record)."""
        with self._lock:
            store = self._opened()
            if isinstance(command, SeatsReleaseRequested):
                entry = _release_entry(command)
            elif isinstance(command, HoldDeadlineChanged):
                entry = _deadline_entry(command)
            else:
                known = store.get(_booking_key(command.booking_id))
                if known is not None:
                    return _replayed_decision(command, json.loads(known))
                entry = self._decide_request(store, command, self.clock())
            self._apply(store, entry, None)
            return entry

    def holder(self, performance_id: int, seat_id: int) -> str | None:
        with self._lock:
            return self._opened().get(_seat_key(performance_id, seat_id))

    # internals ------------------------------------------------------------------------------------------
    def _opened(self) -> KeyValueStore:
        if self._store is None:
            self._store = self._open_store()
            self._positions = json.loads(self._store.get(POSITIONS_KEY) or "{}")
        return self._store

    @staticmethod
    def _decide_request(store: KeyValueStore, request: BookingRequested, now: float) -> LedgerEntry:
        """Free seats are those nobody holds, or whose holder's hold ran out (MySQL's guard stays the judge:
        a hold extended since it was decided here refuses the newcomer there, and the ledger is told)."""

        def taken_by_another(seat: int) -> bool:
            holder = store.get(_seat_key(request.performance_id, seat))
            if holder in (None, request.booking_id):
                return False
            deadline = store.get(_deadline_key(holder))
            return deadline is None or int(deadline) > now * 1000

        section = request.section
        if section is not None and not request.seat_ids:  # the best available, chosen here, in line
            free = [
                s for s in range(section.first_seat_id, section.last_seat_id + 1) if not taken_by_another(s)
            ]
            chosen = choose_seats(section, free, request.best_available[1])  # type: ignore[index]
            if chosen is None:
                count = request.best_available[1]  # type: ignore[index]
                reason = f"no {count} seats of section {section.section_id} were free at its turn"
                return _entry(request, LedgerOutcome.REJECTED, reason=reason)
            request = dataclasses.replace(request, seat_ids=chosen)
        taken = [seat for seat in request.seat_ids if taken_by_another(seat)]
        if taken:
            return _entry(
                request, LedgerOutcome.REJECTED, reason=f"seat(s) {taken} were taken earlier in line"
            )
        return _entry(request, LedgerOutcome.CONFIRMED, expires_at=request.expires_at)

    def _apply(self, store: KeyValueStore, entry: LedgerEntry, position: tuple[str, str] | None) -> None:
        """The one state transition, used live and in replay; atomic with the changelog position."""
        puts: dict[str, str] = {}
        deletes: list[str] = []
        if entry.outcome == LedgerOutcome.DEADLINE:
            self._apply_deadline(store, entry, puts, deletes, position)
            return
        if entry.outcome == LedgerOutcome.CONFIRMED:
            puts.update({_seat_key(entry.performance_id, s): entry.booking_id for s in entry.seat_ids})
            if entry.expires_at is not None:
                puts[_deadline_key(entry.booking_id)] = str(int(entry.expires_at * 1000))
        elif entry.outcome == LedgerOutcome.RELEASED:
            deletes = [
                _seat_key(entry.performance_id, s)
                for s in entry.seat_ids
                if store.get(_seat_key(entry.performance_id, s)) == entry.booking_id
            ]
            # The real holders MySQL named, unless the ledger has already released one of them (its cancel was
            # applied first): writing it back would leave a seat refused for a booking that holds nothing.
            puts.update(
                {
                    _seat_key(entry.performance_id, seat): holder
                    for seat, holder in entry.holders
                    if not _released(store, holder)
                }
            )
            # The ledger no longer knows when a put-back holder's hold ends (it may have been extended): it
            # holds until its release comes (the sweeper's). Its own deadline goes with its seats.
            deletes.append(_deadline_key(entry.booking_id))
            deletes.extend(_deadline_key(holder) for _, holder in entry.holders)
        puts[_booking_key(entry.booking_id)] = json.dumps(
            {"outcome": entry.outcome, "reason": entry.reason, "seat_ids": list(entry.seat_ids)}
        )
        if position is not None:
            self._positions[position[0]] = position[1]
            puts[POSITIONS_KEY] = json.dumps(self._positions)
        store.write(puts, [key for key in deletes if key not in puts])

    def _apply_deadline(
        self,
        store: KeyValueStore,
        entry: LedgerEntry,
        puts: dict[str, str],
        deletes: list[str],
        position: tuple[str, str] | None,
    ) -> None:
        """A hold's deadline moved or went: kept only while the hold still holds its seats here (one whose
        seats a newcomer took since, or that was released, has none to keep). Its decision stays as it is."""
        still_held = any(
            store.get(_seat_key(entry.performance_id, seat)) == entry.booking_id for seat in entry.seat_ids
        )
        if still_held and entry.expires_at is not None:
            puts[_deadline_key(entry.booking_id)] = str(int(entry.expires_at * 1000))
        else:
            deletes.append(_deadline_key(entry.booking_id))
        if position is not None:
            self._positions[position[0]] = position[1]
            puts[POSITIONS_KEY] = json.dumps(self._positions)
        store.write(puts, deletes)


def _entry(command: StreamCommand, outcome: str, **fields: Any) -> LedgerEntry:
    """The changelog entry of `outcome` for the booking a command names, with the seats the command has."""
    return LedgerEntry(
        booking_id=command.booking_id,
        performance_id=command.performance_id,
        user_id=command.user_id,
        seat_ids=command.seat_ids,
        outcome=outcome,
        **fields,
    )


def _deadline_entry(command: HoldDeadlineChanged) -> LedgerEntry:
    return _entry(command, LedgerOutcome.DEADLINE, expires_at=command.expires_at)


def touched_keys(entry: LedgerEntry) -> frozenset[str]:
    """The ledger keys whose state replaying `entry` reads or writes (see SeatLedger._apply)."""
    keys = {_booking_key(entry.booking_id), _deadline_key(entry.booking_id)}
    if entry.outcome in (LedgerOutcome.CONFIRMED, LedgerOutcome.RELEASED, LedgerOutcome.DEADLINE):
        keys.update(_seat_key(entry.performance_id, seat) for seat in entry.seat_ids)
    for seat, holder in entry.holders:
        keys.update((_seat_key(entry.performance_id, seat), _booking_key(holder), _deadline_key(holder)))
    return frozenset(keys)


def commuting_runs(entries: Sequence[T], entry_of: Callable[[T], LedgerEntry | None]) -> list[list[T]]:
    """Split items (in decision order) into consecutive runs whose entries touch disjoint ledger keys.

    Entries of one run commute: replayed in any order they leave the ledger as in decision order, so a run
    can go out in one PutRecords (which keeps no order); the runs go out one after the other. A hot section's
    decisions are mostly of distinct seats (or refusals, which touch their booking only): one run."""
    runs: list[list[T]] = []
    touched: set[str] = set()
    for item in entries:
        entry = entry_of(item)
        keys = touched_keys(entry) if entry is not None else frozenset()
        if not runs or not touched.isdisjoint(keys):
            runs.append([])
            touched = set()
        runs[-1].append(item)
        touched |= keys
    return runs


def _released(store: KeyValueStore, booking_id: str) -> bool:
    known = store.get(_booking_key(booking_id))
    return known is not None and json.loads(known)["outcome"] == LedgerOutcome.RELEASED


def _release_entry(command: SeatsReleaseRequested) -> LedgerEntry:
    return _entry(command, LedgerOutcome.RELEASED, holders=command.holders)


def _replayed_decision(request: BookingRequested, known: dict) -> LedgerEntry | None:
    if known["outcome"] == LedgerOutcome.RELEASED:
        return None  # decided and released since: the persister has both already
    # The seats as decided: a best available request names none; the ledger chose them (kept with it).
    decided = dataclasses.replace(request, seat_ids=tuple(known.get("seat_ids", request.seat_ids)))
    confirmed = known["outcome"] == LedgerOutcome.CONFIRMED
    return _entry(
        decided,
        known["outcome"],
        reason=known.get("reason"),
        expires_at=request.expires_at if confirmed else None,
    )
