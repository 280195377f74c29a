"""`redis_lock` on real Redis and MariaDB: what a lease must and must not do.

Leases here are short (LEASE seconds) so a holder can be made slower than its lease within a second or two.
The slow or paused writers are real: they wrap the app's own repository or database and then run the real
MySQL transaction; only *when* they run is controlled by the test.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from redis.lock import Lock

from chalicelib.adapters.mysql import BookingRepository
from chalicelib.domain.booking_ids import mint
from chalicelib.domain.errors import SeatAlreadyBooked, SeatUnavailable
from chalicelib.domain.models import Booking, BookingRequest, BookingStatus, Performance
from chalicelib.strategies.redis_lock import LeaseWatchdog, RedisLockStrategy
from chalicelib.strategies.redis_lock import strategy as redis_lock
from tests.support.waiting import wait_for

pytestmark = pytest.mark.timeout(60)
LEASE = 0.6  # seconds; the watchdog re-arms every LEASE / 3


# --- helpers -----------------------------------------------------------------------------------------------
def performance_of(services, new_performance, **kwargs) -> Performance:
    return services.catalogue.performance(new_performance(strategy="redis_lock", **kwargs)["performance_id"])


def request_for(performance: Performance, user_id: str, seat_ids: list[int]) -> BookingRequest:
    return BookingRequest(
        mint(performance.performance_id),
        performance.performance_id,
        user_id,
        tuple(sorted(seat_ids)),
        "redis_lock",
        performance,
    )


def strategy(services, bookings=None, client=None, lease_seconds: float = LEASE) -> RedisLockStrategy:
    """Another instance (another Lambda container, say) sharing the app's Redis, MySQL and key prefix."""
    return RedisLockStrategy(
        client or services.redis,
        bookings or services.bookings,
        services.seat_store,
        services.settings.redis_key_prefix,
        lease_seconds=lease_seconds,
    )


def lease_keys(services, performance_id: int) -> list[str]:
    return sorted(
        services.redis.scan_iter(match=f"{services.settings.redis_key_prefix}:{{p{performance_id}}}:lock:*")
    )


def active_holders(sql, performance_id: int) -> dict[int, str]:
    return dict(
        sql(
            "SELECT seat_id, booking_id FROM booking_seats WHERE performance_id = %s AND active = 1",
            performance_id,
        )
    )


def hold_lease(services, name: str, seconds: float) -> Lock:
    """Someone else's lease on a seat: taken directly, no watchdog, never released by the code under test."""
    lease = services.redis.lock(name, timeout=seconds, blocking=False, thread_local=False)
    assert lease.acquire()
    return lease


class InThread:
    """Run a call in a thread of its own; `.result()` returns its value or raises its exception."""

    def __init__(self, call: Callable[[], Any]) -> None:
        self._outcome: list[Any] = []
        self._thread = threading.Thread(target=self._run, args=(call,), daemon=True)
        self._thread.start()

    def _run(self, call: Callable[[], Any]) -> None:
        try:
            self._outcome.append(call())
        except BaseException as exc:
            self._outcome.append(exc)

    def running(self) -> bool:
        return self._thread.is_alive()

    def result(self, timeout: float = 20) -> Any:
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "the call did not finish"
        outcome = self._outcome[0]
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome


class SlowWrites:
    """The app's BookingRepository whose insert_if_seats_free first stalls `seconds`, then writes for real."""

    def __init__(self, bookings: BookingRepository, seconds: float) -> None:
        self._bookings = bookings
        self._seconds = seconds
        self.writing = threading.Event()

    def insert_if_seats_free(self, booking: Booking, idempotency_key: str | None = None) -> dict[int, str]:
        self.writing.set()
        time.sleep(self._seconds)
        return self._bookings.insert_if_seats_free(booking, idempotency_key)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._bookings, name)


class PauseBeforeBookingInsert:
    """The app's Database, except that a transaction stops just before `INSERT INTO bookings` — after the
    free-seat check has run in the same open transaction — until `resume` is set. That is where a GC pause or
    a network stall would catch a writer between its check and its write."""

    def __init__(self, db) -> None:
        self._db = db
        self.paused = threading.Event()
        self.resume = threading.Event()
        self.statements: list[str] = []

    @contextmanager
    def transaction(self) -> Iterator[Any]:
        with self._db.transaction() as cursor:
            yield _PausingCursor(cursor, self)


class _PausingCursor:
    def __init__(self, cursor, owner: PauseBeforeBookingInsert) -> None:
        self._cursor = cursor
        self._owner = owner

    def execute(self, query: str, args: Any = None) -> Any:
        if query.startswith("INSERT INTO bookings "):
            self._owner.paused.set()
            assert self._owner.resume.wait(15), "never resumed"
        self._owner.statements.append(query)
        return self._cursor.execute(query, args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._cursor, name)


class FrozenWatchdog(LeaseWatchdog):
    """The watchdog of a frozen process (a Lambda container paused, a stop-the-world GC): it never re-arms."""

    def _run(self) -> None:
        self._stopped.wait()


# --- the watchdog ------------------------------------------------------------------------------------------
def test_a_holder_slower_than_its_lease_still_excludes_a_second_writer(
    services, new_performance, sql
) -> None:
    """The lease lives LEASE s; the holder's MySQL write takes 5×LEASE. Past 2×LEASE its lease is still there
    (same owner token, re-armed by the watchdog), so another instance is refused at once, while the holder
    is still writing; afterwards the holder's booking is the only one and no lease is left behind."""
    performance = performance_of(services, new_performance)
    pid, seat = performance.performance_id, performance.sections[0].first_seat_id
    slow = SlowWrites(services.bookings, 5 * LEASE)
    holder = strategy(services, bookings=slow)
    lease = holder.lease_name(pid, seat)
    first = request_for(performance, "ann", [seat])

    writing = InThread(lambda: holder.book(first))
    assert slow.writing.wait(5)
    token = services.redis.get(lease)
    assert token is not None, "the holder took its lease before writing"
    time.sleep(2 * LEASE + 0.2)  # an un-renewed lease would have lapsed twice over by now

    assert writing.running(), "precondition: the holder is still inside its slow write"
    assert services.redis.pttl(lease) > 0, "the lease was renewed, not left to lapse"
    assert services.redis.get(lease) == token, "renewed by its owner, not taken over"
    with pytest.raises(SeatUnavailable) as refused:
        services.strategies["redis_lock"].book(request_for(performance, "bob", [seat]))  # the app's instance
    assert refused.value.seat_ids == [seat]
    assert writing.running(), "the second writer was refused while the first was still writing, not after"

    booking = writing.result()
    assert booking.status is BookingStatus.CONFIRMED
    assert lease_keys(services, pid) == [], "every lease was released"
    assert active_holders(sql, pid) == {seat: first.booking_id}
    assert sql("SELECT user_id, status FROM bookings WHERE performance_id = %s", pid) == [
        ("ann", "CONFIRMED")
    ]
    assert services.seat_store.seat_states(pid)[seat] == f"B:{first.booking_id}"


# --- expiry ------------------------------------------------------------------------------------------------
def test_a_dead_holders_lease_stops_blocking_after_its_ttl(services, new_performance, sql) -> None:
    """A holder that died without releasing (nothing renews, nothing releases) blocks the seat for its TTL
    and no longer: refused at once while the lease lives, booked once it has lapsed."""
    ttl = 2.0
    performance = performance_of(services, new_performance)
    pid, seat = performance.performance_id, performance.sections[0].first_seat_id
    body = {"user_id": "bob", "seat_ids": [seat]}
    dead = hold_lease(services, services.strategies["redis_lock"].lease_name(pid, seat), ttl)
    taken_at = time.monotonic()

    for _ in range(2):  # at once, and again later inside the TTL
        with pytest.raises(SeatUnavailable) as refused:
            services.booking_service.book(pid, body, None)
        assert refused.value.seat_ids == [seat]
        time.sleep(ttl / 4)
    # Both were answered before the lease lapsed: refused at once, never made to wait for it.
    assert time.monotonic() - taken_at < ttl, "precondition: both attempts ran while the lease lived"
    assert dead.owned(), "a refused attempt leaves the other holder's lease alone"
    assert sql("SELECT COUNT(*) FROM bookings WHERE performance_id = %s", pid) == [(0,)]

    wait_for(lambda: not dead.locked(), ttl + 3, "the dead holder's lease lapsed")
    booking = services.booking_service.book(pid, body, None)

    assert booking.status is BookingStatus.CONFIRMED
    assert active_holders(sql, pid) == {seat: booking.booking_id}
    assert lease_keys(services, pid) == []


# --- the fence ---------------------------------------------------------------------------------------------
def test_a_writer_that_lost_its_lease_is_fenced_by_the_unique_guard(
    services, new_performance, sql, monkeypatch
) -> None:
    """Writer A takes the lease, checks the seat free in MySQL, then freezes (its watchdog frozen with it)
    just before its INSERT, in the same open transaction. Its lease lapses; writer B (the app's own strategy
    instance) takes a fresh lease and books the seat. A wakes and inserts: its check is stale, so only the
    unique guard on booking_seats can stop it — and it does (SeatAlreadyBooked -> SeatUnavailable)."""
    performance = performance_of(services, new_performance)
    pid, seat = performance.performance_id, performance.sections[0].first_seat_id
    paused_db = PauseBeforeBookingInsert(services.db)
    late = strategy(services, bookings=BookingRepository(paused_db))
    lease = late.lease_name(pid, seat)
    a = request_for(performance, "ann", [seat])

    monkeypatch.setattr(redis_lock, "LeaseWatchdog", FrozenWatchdog)  # only A's book() is started under it
    writer_a = InThread(lambda: late.book(a))
    assert paused_db.paused.wait(5)
    monkeypatch.undo()  # B gets the real watchdog
    assert any(q.startswith("SELECT bs.seat_id, bs.booking_id") for q in paused_db.statements), (
        "precondition: A checked the seats free before pausing"
    )
    wait_for(lambda: not services.redis.exists(lease), 5 * LEASE + 2, "A's lease lapsed")

    b = services.strategies["redis_lock"].book(request_for(performance, "bob", [seat]))
    assert b.status is BookingStatus.CONFIRMED
    paused_db.resume.set()

    with pytest.raises(SeatUnavailable) as refused:
        writer_a.result()
    assert isinstance(refused.value.__cause__, SeatAlreadyBooked), "refused by the unique guard itself"
    assert refused.value.seat_ids == [seat]
    assert sql(
        "SELECT seat_id, COUNT(*) FROM booking_seats WHERE performance_id = %s AND active = 1"
        " GROUP BY seat_id",
        pid,
    ) == [(seat, 1)]
    assert active_holders(sql, pid) == {seat: b.booking_id}
    assert sql("SELECT booking_id FROM bookings WHERE performance_id = %s", pid) == [(b.booking_id,)], (
        "A's transaction rolled back whole: no booking row either"
    )
    assert services.seat_store.seat_states(pid)[seat] == f"B:{b.booking_id}"
    assert lease_keys(services, pid) == []


# --- all or none -------------------------------------------------------------------------------------------
def test_a_multi_seat_request_takes_all_leases_or_gives_back_what_it_took(
    services, new_performance, sql
) -> None:
    """Seats a < b < c, c's lease held by someone else: a and b are leased first (ascending order), c is
    refused, a and b are given back at once (newest first); the other holder's lease and MySQL are
    untouched, and the seats stay available."""
    performance = performance_of(services, new_performance)
    pid, first = performance.performance_id, performance.sections[0].first_seat_id
    a, b, c = first, first + 1, first + 2
    events: list[tuple[str, str, bool | None]] = []

    class RecordingLock(Lock):
        def acquire(self, *args: Any, **kwargs: Any) -> bool:
            taken = super().acquire(*args, **kwargs)
            events.append(("acquire", self.name, taken))
            return taken

        def release(self) -> None:
            events.append(("release", self.name, None))
            super().release()

    class RecordingClient:
        def lock(self, name: str, **kwargs: Any) -> Lock:
            return services.redis.lock(name, lock_class=RecordingLock, **kwargs)

    recorded = strategy(services, client=RecordingClient(), lease_seconds=5)
    name = {seat: recorded.lease_name(pid, seat) for seat in (a, b, c)}
    other = hold_lease(services, name[c], 10)
    try:
        with pytest.raises(SeatUnavailable) as refused:
            recorded.book(request_for(performance, "ann", [c, a, b]))

        assert refused.value.seat_ids == [c]
        assert events == [
            ("acquire", name[a], True),
            ("acquire", name[b], True),
            ("acquire", name[c], False),
            ("release", name[b], None),
            ("release", name[a], None),
        ]
        assert lease_keys(services, pid) == [name[c]], "a's and b's leases are gone, c's is still there"
        assert other.owned()
        assert sql("SELECT COUNT(*) FROM bookings WHERE performance_id = %s", pid) == [(0,)]
        seat_states = services.seat_store.seat_states(pid)
        assert [seat_states[s] for s in (a, b, c)] == ["0", "0", "0"]
    finally:
        other.release()

    # Nothing was left half-taken: the same request now goes through.
    assert recorded.book(request_for(performance, "ann", [a, b, c])).status is BookingStatus.CONFIRMED
    assert sorted(active_holders(sql, pid)) == [a, b, c]


# --- owner-checked renewal and release ---------------------------------------------------------------------
def test_a_lease_now_owned_by_another_token_is_neither_renewed_nor_deleted(
    services, new_performance, caplog
) -> None:
    """While the holder writes, its lease's value is replaced by another token (its lease lapsed and someone
    else took it). The holder's watchdog must not re-arm the other token's lease, and its release must not
    delete it: both are owner-checked."""
    performance = performance_of(services, new_performance)
    pid, seat = performance.performance_id, performance.sections[0].first_seat_id
    others_ttl_ms = 20_000

    class LeaseStolenMidWrite(SlowWrites):
        def insert_if_seats_free(
            self, booking: Booking, idempotency_key: str | None = None
        ) -> dict[int, str]:
            services.redis.set(holder.lease_name(pid, seat), "someone-else", px=others_ttl_ms)
            return super().insert_if_seats_free(booking, idempotency_key)

    holder = strategy(services, bookings=LeaseStolenMidWrite(services.bookings, 3 * LEASE))
    lease = holder.lease_name(pid, seat)
    try:
        with caplog.at_level(logging.WARNING, logger=redis_lock.__name__):
            holder.book(request_for(performance, "ann", [seat]))

        assert services.redis.get(lease) == "someone-else", "the holder's release did not delete it"
        assert services.redis.pttl(lease) > others_ttl_ms - 5_000, (
            "the holder's watchdog did not re-arm someone else's lease to its own short TTL"
        )
        messages = [r.getMessage() for r in caplog.records]
        assert any("could not be renewed" in m for m in messages), messages
        assert any("had lapsed before release" in m for m in messages), messages
    finally:
        services.redis.delete(lease)
