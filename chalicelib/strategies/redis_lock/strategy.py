"""`redis_lock`: a lease per seat in Redis, then the MySQL write.

    HMGET of the requested seats on the Redis seat map: one shown sold -> 409 at once (no lease, no MySQL)
    for seat in ascending order: SET lock:<seat> <unique token> NX PX <ttl>   (redis-py Lock, non-blocking)
        any refused -> give back what was taken -> 409 at once
    watchdog thread: re-arms every lease (owner-checked Lua) every ttl/3 while the MySQL write runs
    MySQL: check the seats free, insert booking + seats            -> 201 CONFIRMED
    release every lease (owner-checked Lua compare-and-delete)

Why redis-py's Lock plus a small watchdog: it gives the unique owner token and the owner-checked
release/extend scripts; python-redis-lock has auto-renewal but is unmaintained since 2022. Lambda freezes a
container between invocations, so the watchdog lives only inside one call: acquire, work, release in the same
invocation; a frozen or killed holder simply lets its leases lapse after the TTL.

A lease is not a fence: a holder paused past its TTL can wake after someone else took the seat. The MySQL
write is fenced by the unique guard on booking_seats (one active booking per seat), so such a late writer is
refused (SeatAlreadyBooked -> 409) instead of selling the seat twice.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import redis
from redis.exceptions import LockError
from redis.lock import Lock

from chalicelib.domain.errors import CacheUnavailable, SeatAlreadyBooked, SeatUnavailable
from chalicelib.domain.models import Booking, BookingRequest
from chalicelib.services.ports import BookingStore, SeatStore
from chalicelib.strategies.seat_mirror import choose_and_book, mirror, refuse_seats_shown_taken

log = logging.getLogger(__name__)


class LeaseWatchdog:
    """Re-arms leases every `interval` seconds until stopped; remembers whether one was lost."""

    def __init__(self, leases: list[Lock], interval: float) -> None:
        self._leases = leases
        self._interval = interval
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lease-watchdog", daemon=True)
        self.lost = False

    def __enter__(self) -> LeaseWatchdog:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stopped.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stopped.wait(self._interval):
            for lease in self._leases:
                try:
                    lease.reacquire()  # owner-checked: only our token's TTL is reset
                except (LockError, redis.RedisError) as exc:
                    self.lost = True
                    log.warning("lease %s could not be renewed: %s", lease.name, exc)


class RedisLockStrategy:
    name = "redis_lock"

    def __init__(
        self,
        client: redis.Redis,
        bookings: BookingStore,
        seat_store: SeatStore,
        key_prefix: str,
        lease_seconds: float = 5.0,
    ) -> None:
        self._client = client
        self._bookings = bookings
        self._seats = seat_store
        self._prefix = key_prefix
        self.lease_seconds = lease_seconds

    def lease_name(self, performance_id: int, seat_id: int) -> str:
        return f"{self._prefix}:{{p{performance_id}}}:lock:{seat_id}"

    def book(self, request: BookingRequest) -> Booking:
        if request.best_available is not None:
            # The seats are not known before MySQL chooses them, so there is nothing to lease: the choice and
            # the write are one transaction, as db_lock's (the section's choosers take turns there).
            return choose_and_book(self._bookings, self._seats, request)
        refuse_seats_shown_taken(self._seats, request)
        booking = Booking.from_request(request, request.accepted_status)
        with self._leases(request) as leases, LeaseWatchdog(leases, self.lease_seconds / 3) as watchdog:
            try:
                taken = self._bookings.insert_if_seats_free(booking, request.idempotency_key)
            except SeatAlreadyBooked as exc:
                # The fence at work: our lease lapsed and someone else's booking got the seat first.
                raise SeatUnavailable(list(request.seat_ids)) from exc
        if watchdog.lost:
            # Stored anyway: the unique guard made this write safe without the lease. Worth a look (a pause
            # longer than the TTL, or Redis trouble), not a failure.
            log.warning("booking %s: a lease lapsed during the write", request.booking_id)
        if taken:
            raise SeatUnavailable(list(taken), holders=taken)
        mirror(self._seats, booking)
        return booking

    def release(self, booking: Booking) -> None:
        mirror(self._seats, booking)

    @contextmanager
    def _leases(self, request: BookingRequest) -> Iterator[list[Lock]]:
        """All the seats' leases (ascending seat order, so two bookings never wait on each other) or none."""
        held: list[Lock] = []
        try:
            for seat in request.seat_ids:
                lease = self._client.lock(
                    self.lease_name(request.performance_id, seat),
                    timeout=self.lease_seconds,
                    blocking=False,
                    thread_local=False,  # the watchdog thread re-arms it
                )
                if not lease.acquire():
                    raise SeatUnavailable([seat], "seat(s) are being booked by someone else right now")
                held.append(lease)
            yield held
        except redis.RedisError as exc:
            raise CacheUnavailable("the lock store (Redis) is unavailable; nothing was booked") from exc
        finally:
            for lease in reversed(held):
                _release_quietly(lease)


def _release_quietly(lease: Lock) -> None:
    try:
        lease.release()  # owner-checked compare-and-delete (Lua)
    except LockError:
        log.warning("lease %s had lapsed before release (another holder may have it now)", lease.name)
    except redis.RedisError as exc:
        log.warning("lease %s not released (%s); it lapses after its TTL", lease.name, exc)
