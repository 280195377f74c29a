"""db_lock's NOWAIT refusal is an OperationalError (3572); the pool must not take it for a broken connection.

DBUtils' default replaced the connection on every OperationalError, so under a hot-seat burst every refused
booking paid a MySQL handshake. With `isfatal` only a lost connection is replaced: a pool of one connection
keeps the same server thread through refusals and serves the booking after them."""

from __future__ import annotations

from urllib.parse import urlsplit

import pymysql
import pytest
from ulid import ULID

from chalicelib.adapters.mysql import BookingRepository, Database
from chalicelib.domain.errors import SeatsLocked
from chalicelib.domain.models import Booking, BookingStatus


def connection_id(db: Database) -> int:
    with db.transaction() as cursor:
        cursor.execute("SELECT CONNECTION_ID()")
        return cursor.fetchone()[0]


def test_a_nowait_refusal_keeps_the_pooled_connection(settings, services, new_performance, sql) -> None:
    performance = new_performance(strategy="db_lock", rows=1, seats_per_row=2)
    seat = performance["sections"][0]["first_seat_id"]
    db = Database(settings.database_url, pool_size=1, connect_timeout=2)
    bookings = BookingRepository(db)

    def attempt() -> dict[int, str]:
        booking = Booking(
            str(ULID()), performance["performance_id"], "ann", (seat,), BookingStatus.CONFIRMED, "db_lock"
        )
        return bookings.insert_with_seat_row_locks(booking)

    before = connection_id(db)
    parts = urlsplit(settings.database_url)
    holder = pymysql.connect(  # another transaction holds the seat's row
        host=parts.hostname, port=parts.port or 3306, user=parts.username or "root", database=db.database
    )
    try:
        holder.begin()
        holder.cursor().execute("SELECT seat_id FROM seats WHERE seat_id = %s FOR UPDATE", (seat,))
        for _ in range(3):
            with pytest.raises(SeatsLocked):
                attempt()
        assert connection_id(db) == before, "a refused row lock replaced the pooled connection"
    finally:
        holder.rollback()
        holder.close()
    assert attempt() == {}  # the lock is gone: booked, on the same connection
    assert connection_id(db) == before
    assert sql("SELECT COUNT(*) FROM booking_seats WHERE seat_id = %s AND active = 1", seat) == [(1,)]
    db.close()
