"""Seat state and booking records in Redis: a fast, shared copy of what MySQL (the journal of every accepted
booking) holds, plus the holds of requests on their way to MySQL. Losing any of it loses no promise: every
seat-holding booking that was answered is in MySQL, and a map is rebuilt or repaired from there.

Layout (one hash tag per performance: every key of a performance, its booking records included, lives in
one Redis Cluster slot, so each script and transaction below touches a single slot):
    bk:{p<id>}:seats    HASH seat id -> "0" free | "H:<booking>" held (PENDING) | "B:<booking>" booked
    bk:{p<id>}:version  change counter, bumped by every script that changes a seat
    bk:{p<id>}:changes  LIST the change log: "<version> <seat>=<letter> ..." per version, the newest last,
                        the last `change_history` versions (what GET .../seats?since= answers from)
    bk:{p<id>}:holds    HASH booking id -> epoch ms its hold runs out, for each hold (HELD, or PENDING on its
                        way): from then on its "H:" seats are free to every take and early refusal, before
                        anything has released them (the sweeper does, and the map shows it then)
    bk:{p<id>}:booking:<booking>  HASH the accepted booking (fields of BookingRecord), with a TTL
    bk:{p<id>}:rendered:<version>  HASH view -> the map's bytes as rendered for that version (gzip in
                        base64), with a short TTL: rendered by one process, read by the others
    bk:{p<id>}:frame    the version readers are served in this render interval (its TTL): the version
                        rendered last, or the one a reader of deltas met first; while it lives, map readers
                        take it rather than render a newer one and deltas lead up to it
    bk:{p<id>}:seats:loading:<uuid>  the scratch hash a load builds before RENAMENX puts it in place

The same layout serves a single Redis (ElastiCache primary + replica) and Redis Cluster (REDIS_CLUSTER=1,
ElastiCache cluster mode): the reserve and confirm scripts touch the seat hash and the booking record, which
share the performance's slot.

Finding a booking record by its id alone: booking ids carry the low 32 bits of their performance id
(domain/booking_ids.py), so `record_key(booking_id)` can name the slot without asking anyone. Every writer
passes the performance id it knows; a reader with the id alone (GET /bookings/<id> while MySQL is down:
BookingService._from_redis) derives it from the id, which misses two kinds of record: a booking of a
performance id >= 2^32 (its id carries the id's low 32 bits only), and one minted before this layout (its
record sits under the old key `bk:booking:<id>` for its TTL). Both are still answered by MySQL; only the
MySQL-down fallback cannot see them.

Where the Lua lives: this adapter runs every script, and owns the ones every strategy and the reconcile job
share (lua/: the owner-checked confirm, release, record mark and compare-and-set replace that keep the map in
line with MySQL). The take belongs to one strategy: reserve_seats.lua sits in strategies/redis_async/, next
to the strategy whose story it is, and bootstrap hands its path to this adapter (`take_script`), which loads
it like the others and packs its arguments (`reserve`). No module here imports a strategy.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

import redis

from chalicelib.domain.booking_ids import performance_of
from chalicelib.domain.models import BestAvailable, Booking, BookingStatus, SeatStatus
from chalicelib.domain.seat_holds import BookingRecord, ReserveOutcome, ReserveResult
from chalicelib.domain.seat_map import (
    CHANGE_HISTORY,
    FREE,
    ChangeLogRead,
    holder_state,
    seat_status_of,
    shown_booking,
)

log = logging.getLogger(__name__)
LUA_DIR = Path(__file__).resolve().parent / "lua"
LOAD_CHUNK = 5_000


Holder = tuple[str, BookingStatus]  # (booking id, status) of the active booking holding a seat


def _state(holder: Holder | None) -> str:
    return FREE if holder is None else holder_state(*holder)


def _ms(epoch_seconds: float) -> int:
    return int(epoch_seconds * 1000)


def _deadline(expires_at: float | None) -> str:
    """A hold's deadline as the scripts take it: epoch milliseconds, '' for none."""
    return "" if expires_at is None else str(_ms(expires_at))


def _load_script(client: redis.Redis, path: Path):
    # register_script: EVALSHA on every call, falling back to EVAL (which caches it) on NOSCRIPT.
    return client.register_script(path.read_text())


class RedisSeatStore:
    """The seat store port (services/ports.py SeatStore) on Redis. `take_script`: redis_async's
    reserve_seats.lua (see the module docstring for why the strategy keeps it and this adapter runs it)."""

    def __init__(
        self,
        client: redis.Redis,
        record_ttl_seconds: int,
        key_prefix: str = "bk",
        *,
        take_script: Path,
        change_history: int = CHANGE_HISTORY,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._client = client
        self.clock = clock
        self._record_ttl = record_ttl_seconds
        self._prefix = key_prefix
        self._history = change_history
        self._reserve = _load_script(client, take_script)
        self._release = _load_script(client, LUA_DIR / "release_seats.lua")
        self._confirm = _load_script(client, LUA_DIR / "confirm_seats.lua")
        self._mark = _load_script(client, LUA_DIR / "mark_record.lua")
        self._replace = _load_script(client, LUA_DIR / "replace_seats.lua")
        self._changes_since = _load_script(client, LUA_DIR / "changes_since.lua")
        self._publish = _load_script(client, LUA_DIR / "publish_seats.lua")
        # Performances whose seat map missed a change MySQL made (Redis was unreachable at the time); their
        # maps are realigned with MySQL in place as soon as Redis answers again (see heal_missed).
        self._missed: set[int] = set()
        self._missed_lock = threading.Lock()
        self.realign: Callable[[int], object] = lambda performance_id: None

    # keys -------------------------------------------------------------------------------------------
    def seats_key(self, performance_id: int) -> str:
        return f"{self._prefix}:{{p{performance_id}}}:seats"

    def version_key(self, performance_id: int) -> str:
        return f"{self._prefix}:{{p{performance_id}}}:version"

    def changes_key(self, performance_id: int) -> str:
        return f"{self._prefix}:{{p{performance_id}}}:changes"

    def rendered_key(self, performance_id: int, version: int) -> str:
        # The version in the name: a key never changes meaning, so no reader can pair a version with other
        # bytes, and an old version's bytes are never read again (they lapse with their TTL).
        return f"{self._prefix}:{{p{performance_id}}}:rendered:{version}"

    def holds_key(self, performance_id: int) -> str:
        return f"{self._prefix}:{{p{performance_id}}}:holds"

    def frame_key(self, performance_id: int) -> str:
        return f"{self._prefix}:{{p{performance_id}}}:frame"

    def record_key(self, booking_id: str, performance_id: int | None = None) -> str:
        """The booking's record, in its performance's slot; without `performance_id`, the one its id carries
        (see the module docstring for what that misses)."""
        if performance_id is None:
            performance_id = performance_of(booking_id) or 0
        return f"{self._prefix}:{{p{performance_id}}}:booking:{booking_id}"

    # seat state -------------------------------------------------------------------------------------
    def load_performance(
        self, performance_id: int, seat_ids: Iterable[int], holders: Mapping[int, tuple[str, BookingStatus]]
    ) -> bool:
        """Publish a performance's seat state unless it is already there; True if this call published it.

        `holders` maps seat id -> (booking id, status) for the seats active bookings hold in MySQL. The hash
        is built under a scratch key and renamed into place with RENAMENX, so readers never see half a hash
        and a concurrent loader can never overwrite live holds.
        """
        target = self.seats_key(performance_id)
        if self._client.exists(target):
            return False
        scratch = f"{target}:loading:{uuid.uuid4().hex}"
        states = {
            seat_id: holder_state(*holders[seat_id]) if seat_id in holders else FREE for seat_id in seat_ids
        }
        items = list(states.items())
        pipe = self._client.pipeline(transaction=False)
        pipe.delete(scratch)
        for start in range(0, len(items), LOAD_CHUNK):
            pipe.hset(scratch, mapping=dict(items[start : start + LOAD_CHUNK]))
        pipe.execute()
        keys = [scratch, target, self.version_key(performance_id), self.changes_key(performance_id)]
        try:  # rename, version bump and an empty change log in one step (publish_seats.lua)
            published = self._publish(keys=keys, args=[time.time_ns() // 1_000_000 * 1_000])
        finally:
            self._client.delete(scratch)
        return bool(published)

    def forget_performance(self, performance_id: int) -> None:
        self._client.delete(
            self.seats_key(performance_id), self.version_key(performance_id), self.changes_key(performance_id)
        )

    def note_missed(self, performance_id: int) -> None:
        with self._missed_lock:
            self._missed.add(performance_id)

    def heal_missed(self) -> None:
        """Realign in place the seat maps that missed a change, if any (cheap when none did: one set check).
        `realign` (set by bootstrap: the reconcile job for one performance) compares the map with MySQL and
        repairs it seat by seat, keeping the holds of requests still on their way to MySQL."""
        if not self._missed:
            return
        with self._missed_lock:
            missed, self._missed = self._missed, set()
        for performance_id in sorted(missed):
            try:
                self.realign(performance_id)
            except Exception as exc:  # still away (Redis or MySQL): try again on the next use
                log.warning("seat map of performance %s not realigned yet: %s", performance_id, exc)
                self.note_missed(performance_id)

    def seat_states(self, performance_id: int) -> dict[int, str] | None:
        """seat id -> raw state ("0", "H:<booking>", "B:<booking>"); None if the performance is not loaded."""
        self.heal_missed()
        raw = self._client.hgetall(self.seats_key(performance_id))
        return {int(seat): state for seat, state in raw.items()} if raw else None

    def versioned_statuses(self, performance_id: int) -> tuple[int, dict[int, SeatStatus] | None]:
        """(version, seat id -> status) read in one atomic step; statuses None if not loaded."""
        self.heal_missed()
        read = self._client.pipeline(transaction=True)
        read.get(self.version_key(performance_id))
        read.hgetall(self.seats_key(performance_id))
        version, raw = read.execute()
        statuses = {int(seat): seat_status_of(state) for seat, state in raw.items()} if raw else None
        return int(version or 0), statuses

    def loaded_version(self, performance_id: int) -> int | None:
        """The seat map's version, or None if the performance's seats are not loaded (one round trip)."""
        self.heal_missed()
        read = self._client.pipeline(transaction=True)
        read.get(self.version_key(performance_id))
        read.exists(self.seats_key(performance_id))
        version, loaded = read.execute()
        return int(version or 0) if loaded else None

    def current_versions(self, performance_id: int) -> tuple[int | None, int | None]:
        """(the map's version, None if not loaded; the version rendered within the render interval, None if
        none was), in one round trip."""
        self.heal_missed()
        read = self._client.pipeline(transaction=False)
        read.get(self.version_key(performance_id))
        read.exists(self.seats_key(performance_id))
        read.get(self.frame_key(performance_id))
        version, loaded, fresh = read.execute()
        return (int(version or 0) if loaded else None), (int(fresh) if fresh else None)

    def version(self, performance_id: int) -> int:
        return int(self._client.get(self.version_key(performance_id)) or 0)

    def _change_keys(self, performance_id: int) -> tuple[str, str]:
        return self.version_key(performance_id), self.changes_key(performance_id)

    def changes_since(
        self, performance_id: int, since: int, frame_seconds: float = 0.0
    ) -> ChangeLogRead | None:
        """The change log's entries after version `since` up to the performance's frame (the version served
        in this render interval of `frame_seconds`; 0: the current version), and the version they lead to,
        read in one step (changes_since.lua); `entries` None if the log does not reach back to `since`; None
        if the performance's seats are not loaded."""
        self.heal_missed()
        keys = [
            self.seats_key(performance_id),
            *self._change_keys(performance_id),
            self.frame_key(performance_id),
        ]
        args = [since, round(frame_seconds * 1000)]
        outcome, *rest = self._changes_since(keys=keys, args=args)
        if outcome == -2:
            return None
        version, entries = int(rest[0]), rest[1:]
        return ChangeLogRead(version, entries if outcome >= 0 else None)

    def rendered_views(self, performance_id: int, version: int) -> dict[str, str] | None:
        return self._client.hgetall(self.rendered_key(performance_id, version)) or None

    def keep_rendered_views(
        self,
        performance_id: int,
        version: int,
        views: Mapping[str, str],
        ttl_seconds: int,
        frame_seconds: float = 0.0,
    ) -> None:
        key = self.rendered_key(performance_id, version)
        keep = self._client.pipeline(transaction=True)  # never a key without its TTL (noeviction Redis)
        keep.hset(key, mapping=dict(views))
        keep.expire(key, ttl_seconds)
        if frame_seconds > 0:  # the views first: a reader that sees the pointer finds the bytes
            keep.set(self.frame_key(performance_id), version, px=max(1, round(frame_seconds * 1000)))
        keep.execute()

    def reserve(self, record: BookingRecord, best: BestAvailable | None = None) -> ReserveOutcome:
        self.heal_missed()
        fields = record.to_fields()
        args: list[str | int] = [record.booking_id, self._record_ttl, self._history, len(fields)]
        for name, value in fields.items():
            args.extend((name, value))
        args.extend((_ms(self.clock()), _deadline(record.expires_at)))
        section = best.section if best else None
        args.append(
            f"{section.first_seat_id}:{section.rows}:{section.seats_per_row}:{best.count}"
            if best and section
            else ""
        )
        args.extend(record.seat_ids)
        keys = [
            self.seats_key(record.performance_id),
            self.record_key(record.booking_id, record.performance_id),
            self.version_key(record.performance_id),
            self.changes_key(record.performance_id),
            self.holds_key(record.performance_id),
        ]
        reply = self._reserve(keys=keys, args=args)
        result = ReserveResult(int(reply[0]))
        if result is ReserveResult.UNAVAILABLE:  # seat, state, seat, state …
            states = {int(seat): state for seat, state in zip(reply[1::2], reply[2::2], strict=True)}
            holders = {seat: booking for seat, state in states.items() if (booking := shown_booking(state))}
            return ReserveOutcome(result, tuple(states), holders, states)
        return ReserveOutcome(result, tuple(int(s) for s in reply[1:]))

    def taken_among(self, performance_id: int, seat_ids: tuple[int, ...]) -> dict[int, str] | None:
        """The requested seats the seat map shows taken -> the state of each ("H:…"/"B:…"); None if the
        performance's seats are not loaded. A seat held by a hold whose time has run out is not taken."""
        self.heal_missed()
        states = self._client.hmget(self.seats_key(performance_id), list(seat_ids))
        if all(state is None for state in states):
            return None
        taken = {
            seat: state for seat, state in zip(seat_ids, states, strict=True) if state not in (None, FREE)
        }
        held = sorted({state[2:] for state in taken.values() if state.startswith("H:")})
        if not held:  # nearly always: sold seats, or nothing taken (one round trip, as before holds)
            return taken
        deadlines = dict(zip(held, self._client.hmget(self.holds_key(performance_id), held), strict=True))
        now_ms = _ms(self.clock())

        def lapsed(state: str) -> bool:
            ends = deadlines.get(state[2:]) if state.startswith("H:") else None
            return ends is not None and int(ends) <= now_ms

        return {seat: state for seat, state in taken.items() if not lapsed(state)}

    def hold_deadlines(self, performance_id: int, booking_ids: Iterable[str]) -> dict[str, float]:
        """booking id -> its hold's deadline (epoch seconds), for those of the bookings that are holds."""
        wanted = sorted(set(booking_ids))
        if not wanted:
            return {}
        ends = self._client.hmget(self.holds_key(performance_id), wanted)
        return {booking: int(end) / 1000 for booking, end in zip(wanted, ends, strict=True) if end}

    def remember(self, record: BookingRecord) -> None:
        """Keep a booking's record without holding seats (strategies that decide later, in order)."""
        key = self.record_key(record.booking_id, record.performance_id)
        pipe = self._client.pipeline(transaction=True)
        pipe.hset(key, mapping=record.to_fields())
        pipe.expire(key, self._record_ttl)
        pipe.execute()

    def release(self, booking_id: str, performance_id: int, seat_ids: Iterable[int]) -> int:
        self.heal_missed()
        keys = [
            self.seats_key(performance_id),
            *self._change_keys(performance_id),
            self.holds_key(performance_id),
        ]
        return int(self._release(keys=keys, args=[booking_id, self._history, *seat_ids]))

    def confirm(
        self,
        booking_id: str,
        performance_id: int,
        seat_ids: Iterable[int],
        overwrite: bool = False,
        hold_until: float | None = None,
    ) -> int:
        """Seats -> booked by this booking (held until `hold_until`, for a hold MySQL has HELD); `overwrite`
        only where MySQL has just made it their holder."""
        self.heal_missed()
        keys = [
            self.seats_key(performance_id),
            self.version_key(performance_id),
            self.record_key(booking_id, performance_id),
            self.changes_key(performance_id),
            self.holds_key(performance_id),
        ]
        args = [booking_id, "1" if overwrite else "0", self._history, _deadline(hold_until), *seat_ids]
        return int(self._confirm(keys=keys, args=args))

    def replace(self, performance_id: int, changes: Iterable[tuple[int, str, str]]) -> int:
        """(seat, expected state, new state) -> seats changed: each only if it still shows the expected state
        (replace_seats.lua), so a repair computed from an earlier read never undoes a newer change."""
        args = [part for change in changes for part in change]
        if not args:
            return 0
        self.heal_missed()
        keys = [self.seats_key(performance_id), *self._change_keys(performance_id)]
        return int(self._replace(keys=keys, args=[self._history, *args]))

    def repair_holders(
        self, performance_id: int, changes: Iterable[tuple[int, Holder | None, Holder | None]]
    ) -> int:
        """(seat, holder it should still show, holder it should show now) -> seats changed; a holder is
        (booking id, status), None for a free seat. Compare-and-set, as `replace`."""
        return self.replace(
            performance_id, [(seat, _state(before), _state(after)) for seat, before, after in changes]
        )

    # booking records --------------------------------------------------------------------------------
    def read_record(self, booking_id: str, performance_id: int | None = None) -> BookingRecord | None:
        fields = self._client.hgetall(self.record_key(booking_id, performance_id))
        return BookingRecord.from_fields(booking_id, fields) if fields else None

    def read_booking(self, booking_id: str, performance_id: int | None = None) -> Booking | None:
        """The booking as Redis remembers it (what GET /bookings answers before MySQL has it)."""
        record = self.read_record(booking_id, performance_id)
        return None if record is None else record.as_booking()

    def mark_record(
        self,
        booking_id: str,
        status: BookingStatus,
        reason: str | None = None,
        performance_id: int | None = None,
    ) -> bool:
        """Set the record's status if it still exists (once expired, MySQL alone is the truth)."""
        key = self.record_key(booking_id, performance_id)
        return bool(self._mark(keys=[key], args=[status.value, reason or ""]))

    def delete_record(self, booking_id: str, performance_id: int | None = None) -> None:
        self._client.delete(self.record_key(booking_id, performance_id))

    def ping(self) -> bool:
        return bool(self._client.ping())
