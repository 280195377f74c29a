"""`db_lock`: one short MySQL transaction that locks the requested seat rows, never waiting for a lock.

    HMGET of the requested seats on the Redis seat map: one shown sold -> 409 at once (no transaction)
    BEGIN; SELECT … FROM seats WHERE seat_id IN (…) ORDER BY seat_id FOR UPDATE NOWAIT;
           SELECT … FROM booking_seats WHERE seat_id IN (…) AND active = 1;   -- free?
           INSERT booking + booking_seats;  COMMIT                            -> 201 CONFIRMED

A row another transaction holds, or a seat already taken -> 409 at once (NOWAIT: nobody queues behind a hot
seat, so a burst cannot pile up threads or exhaust the pool). Seats are locked in ascending order, so two
multi-seat bookings can never deadlock. Connections come from the bounded, blocking pool (adapters/mysql.py).
"""

from __future__ import annotations

from chalicelib.domain.errors import SeatAlreadyBooked, SeatsLocked, SeatUnavailable
from chalicelib.domain.models import Booking, BookingRequest
from chalicelib.services.ports import BookingStore, SeatStore
from chalicelib.strategies.seat_mirror import choose_and_book, mirror, refuse_seats_shown_taken


class DbLockStrategy:
    name = "db_lock"

    def __init__(self, bookings: BookingStore, seat_store: SeatStore) -> None:
        self._bookings = bookings
        self._seats = seat_store

    def book(self, request: BookingRequest) -> Booking:
        if request.best_available is not None:
            return choose_and_book(self._bookings, self._seats, request)
        refuse_seats_shown_taken(self._seats, request)
        booking = Booking.from_request(request, request.accepted_status)
        try:
            taken = self._bookings.insert_with_seat_row_locks(booking, request.idempotency_key)
        except SeatsLocked as exc:
            raise SeatUnavailable(exc.seat_ids, "seat(s) are being booked by someone else right now") from exc
        except SeatAlreadyBooked as exc:  # the unique guard: cannot happen while every writer locks first
            raise SeatUnavailable(list(request.seat_ids)) from exc
        if taken:
            raise SeatUnavailable(list(taken), holders=taken)
        mirror(self._seats, booking)
        return booking

    def release(self, booking: Booking) -> None:
        mirror(self._seats, booking)
