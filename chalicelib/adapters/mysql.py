"""MySQL (MariaDB locally, RDS in AWS): connection pool, transactions and the repositories.

Connections come from a DBUtils PooledDB: bounded (a burst waits for a connection instead of opening
thousands), reused across requests, and in Lambda one small pool per container. Every unit of work is one
explicit transaction (`begin()` also tells DBUtils not to transparently reconnect in the middle of one).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC
from urllib.parse import unquote, urlsplit

import pymysql
from dbutils.pooled_db import PooledDB
from pymysql.cursors import Cursor

from chalicelib.adapters.circuit import CircuitBreaker, CircuitOpen
from chalicelib.domain.errors import BookingExists, SeatAlreadyBooked, SeatsLocked, ServiceUnavailable
from chalicelib.domain.models import (
    Booking,
    BookingStatus,
    Event,
    EventSpec,
    Performance,
    ReconcileEntry,
    Section,
)

ER_DUP_ENTRY = 1062
# NOWAIT refused a row lock: MariaDB reports ER_LOCK_WAIT_TIMEOUT, MySQL 8 ER_LOCK_NOWAIT.
LOCK_NOT_GRANTED = (1205, 3572)
SEAT_GUARD_KEY = "uq_one_active_booking_per_seat"
INSERT_CHUNK = 1_000


# Client/server codes that mean "MySQL is not there" (not a lock or a deadlock): can't connect, gone away,
# lost the connection mid-query (a read timeout too), shutting down, connection killed.
CONNECTION_LOST = frozenset({2002, 2003, 2006, 2013, 2055, 1053, 1927, 4031})


def _breaks_the_connection(error: Exception) -> bool:
    """DBUtils' `isfatal`: only a lost connection is worth replacing. By default the pool takes every
    OperationalError for one, so each NOWAIT refusal (3572), lock wait timeout or deadlock closed its
    connection and opened a new one: a handshake per refused booking, ~20 ms of CPU under a hot-seat burst."""
    if isinstance(error, pymysql.err.OperationalError):
        return error.args[0] in CONNECTION_LOST
    return True  # InterfaceError, InternalError: the connection's state is unknown


def _is_outage(exc: BaseException) -> bool:
    cause = exc.__cause__ if isinstance(exc, ServiceUnavailable) else exc
    if isinstance(cause, pymysql.err.InterfaceError):
        return True
    return isinstance(cause, pymysql.err.OperationalError) and cause.args[0] in CONNECTION_LOST


class Database:
    """A bounded, blocking connection pool behind a circuit breaker: a MySQL that is down or hung costs
    the first few callers one timeout each, then everyone gets ServiceUnavailable at once until a probe
    (a fresh connection and a ping) succeeds again."""

    def __init__(
        self,
        database_url: str,
        pool_size: int,
        connect_timeout: float,
        query_timeout: float = 10.0,
        breaker_failures: int = 5,
        breaker_reset_seconds: float = 5.0,
    ) -> None:
        parts = urlsplit(database_url)
        self.database = parts.path.lstrip("/")
        self._probe_args = {
            "host": parts.hostname or "127.0.0.1",
            "port": parts.port or 3306,
            "user": unquote(parts.username or "root"),
            "password": unquote(parts.password or ""),
            "connect_timeout": connect_timeout,
            "read_timeout": connect_timeout,
        }
        self.breaker = CircuitBreaker(
            "mysql",
            failure_threshold=breaker_failures,
            reset_seconds=breaker_reset_seconds,
            is_failure=_is_outage,
            probe=self._probe,
            # The pooled connections died with the outage; without this each would fail one transaction.
            on_recovered=self._drop_idle_connections,
        )
        self._pool = PooledDB(
            creator=pymysql,
            maxconnections=pool_size,
            maxcached=pool_size,
            blocking=True,  # wait for a free connection rather than fail under a burst
            ping=0,  # no round trip per checkout; a dead connection fails its transaction and is reopened
            isfatal=_breaks_the_connection,
            # No ROLLBACK on return unless a transaction is still open (every unit of work here ends with a
            # commit or a rollback). DBUtils' default sends one on every return while holding the pool's lock,
            # so all MySQL work of a process queued behind one round trip each (`make bench`, db_lock).
            reset=False,
            host=parts.hostname or "127.0.0.1",
            port=parts.port or 3306,
            user=unquote(parts.username or "root"),
            password=unquote(parts.password or ""),
            database=self.database,
            charset="utf8mb4",
            autocommit=False,
            connect_timeout=connect_timeout,
            # Bookings run a handful of tiny statements: a statement this slow means MySQL is in trouble.
            read_timeout=query_timeout,
            write_timeout=query_timeout,
        )

    def _probe(self) -> None:
        pymysql.connect(**self._probe_args).close()

    def _drop_idle_connections(self) -> None:
        self._pool.close()  # closes the idle connections only; new ones are opened on demand

    @contextmanager
    def transaction(self) -> Iterator[Cursor]:
        """One transaction; any connection-level failure, or an open circuit, is ServiceUnavailable."""
        try:
            with self.breaker.guard(), self._transaction() as cursor:
                yield cursor
        except CircuitOpen as exc:
            raise ServiceUnavailable("database unavailable") from exc

    @contextmanager
    def _transaction(self) -> Iterator[Cursor]:
        try:
            connection = self._pool.connection()
        except pymysql.err.MySQLError as exc:
            raise ServiceUnavailable("database unavailable") from exc
        try:
            connection.begin()
            cursor = connection.cursor()
            yield cursor
            connection.commit()
        except BaseException as exc:
            _rollback_quietly(connection)
            if isinstance(exc, pymysql.err.OperationalError | pymysql.err.InterfaceError):
                raise ServiceUnavailable("database unavailable") from exc
            raise
        finally:
            connection.close()  # back to the pool

    def ping(self) -> bool:
        with self.transaction() as cursor:
            cursor.execute("SELECT 1")
            return cursor.fetchone() == (1,)

    def close(self) -> None:
        self._pool.close()


def _rollback_quietly(connection) -> None:
    # If the connection is gone, the server has rolled the transaction back for us.
    with contextlib.suppress(pymysql.err.MySQLError):
        connection.rollback()


def _is_seat_guard_violation(exc: pymysql.err.IntegrityError) -> bool:
    return exc.args[0] == ER_DUP_ENTRY and SEAT_GUARD_KEY in str(exc.args[1])


class CatalogueRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    def create_event(
        self, spec: EventSpec, before_commit: Callable[[Event], object] = lambda event: None
    ) -> Event:
        """Store the event; `before_commit` runs inside the transaction (raising rolls everything back)."""
        with self._db.transaction() as cursor:
            cursor.execute("INSERT INTO events (name, venue) VALUES (%s, %s)", (spec.name, spec.venue))
            event_id = cursor.lastrowid
            performances = tuple(
                self._insert_performance(cursor, event_id, spec, i) for i in range(len(spec.performances))
            )
            event = Event(event_id=event_id, name=spec.name, venue=spec.venue, performances=performances)
            before_commit(event)
        return event

    def _insert_performance(self, cursor: Cursor, event_id: int, spec: EventSpec, index: int) -> Performance:
        performance_spec = spec.performances[index]
        starts_at = performance_spec.starts_at
        cursor.execute(
            "INSERT INTO performances (event_id, starts_at, starts_at_utc, strategy) VALUES (%s, %s, %s, %s)",
            (
                event_id,
                starts_at.isoformat(),
                starts_at.astimezone(UTC).replace(tzinfo=None),
                performance_spec.strategy,
            ),
        )
        performance_id = cursor.lastrowid
        sections = []
        for section_spec in spec.sections:
            first_seat_id = _allocate_seat_ids(cursor, section_spec.seat_count)
            cursor.execute(
                "INSERT INTO sections (performance_id, name, price, seat_rows, seats_per_row, first_seat_id)"
                " VALUES (%s, %s, %s, %s, %s, %s)",
                (
                    performance_id,
                    section_spec.name,
                    section_spec.price,
                    section_spec.rows,
                    section_spec.seats_per_row,
                    first_seat_id,
                ),
            )
            section = Section(
                section_id=cursor.lastrowid,
                performance_id=performance_id,
                name=section_spec.name,
                price=section_spec.price,
                rows=section_spec.rows,
                seats_per_row=section_spec.seats_per_row,
                first_seat_id=first_seat_id,
            )
            _insert_seats(cursor, section)
            sections.append(section)
        return Performance(
            performance_id=performance_id,
            event_id=event_id,
            starts_at=starts_at.isoformat(),
            strategy=performance_spec.strategy,
            sections=tuple(sections),
        )

    def find_event_id(self, name: str, venue: str) -> int | None:
        with self._db.transaction() as cursor:
            cursor.execute("SELECT MIN(event_id) FROM events WHERE name = %s AND venue = %s", (name, venue))
            return cursor.fetchone()[0]

    def list_events(self, limit: int, after_event_id: int) -> list[Event]:
        with self._db.transaction() as cursor:
            cursor.execute(
                "SELECT event_id, name, venue FROM events WHERE event_id > %s ORDER BY event_id LIMIT %s",
                (after_event_id, limit),
            )
            return [Event(event_id=row[0], name=row[1], venue=row[2]) for row in cursor.fetchall()]

    def get_event(self, event_id: int) -> Event | None:
        with self._db.transaction() as cursor:
            cursor.execute("SELECT event_id, name, venue FROM events WHERE event_id = %s", (event_id,))
            row = cursor.fetchone()
            if row is None:
                return None
            cursor.execute(
                "SELECT performance_id FROM performances WHERE event_id = %s ORDER BY performance_id",
                (event_id,),
            )
            performance_ids = [r[0] for r in cursor.fetchall()]
            performances = tuple(_read_performance(cursor, pid) for pid in performance_ids)
        return Event(
            event_id=row[0], name=row[1], venue=row[2], performances=tuple(p for p in performances if p)
        )

    def get_performance(self, performance_id: int) -> Performance | None:
        with self._db.transaction() as cursor:
            return _read_performance(cursor, performance_id)

    def existing_seat_ids(self, seat_ids: Iterable[int]) -> set[int]:
        wanted = list(seat_ids)
        if not wanted:
            return set()
        with self._db.transaction() as cursor:
            placeholders = ", ".join(["%s"] * len(wanted))
            cursor.execute(f"SELECT seat_id FROM seats WHERE seat_id IN ({placeholders})", wanted)
            return {row[0] for row in cursor.fetchall()}

    def event_ids(self) -> list[int]:
        with self._db.transaction() as cursor:
            cursor.execute("SELECT event_id FROM events")
            return [row[0] for row in cursor.fetchall()]

    def performance_ids(self) -> list[int]:
        with self._db.transaction() as cursor:
            cursor.execute("SELECT performance_id FROM performances")
            return [row[0] for row in cursor.fetchall()]

    def seat_id_ranges(self) -> list[range]:
        """Every seat id, as one range per section (a section's seats have contiguous ids)."""
        with self._db.transaction() as cursor:
            cursor.execute("SELECT first_seat_id, seat_rows * seats_per_row FROM sections")
            return [range(first, first + count) for first, count in cursor.fetchall()]


def _allocate_seat_ids(cursor: Cursor, count: int) -> int:
    """Reserve `count` contiguous seat ids and return the first (LAST_INSERT_ID(expr): one statement)."""
    cursor.execute(
        "UPDATE id_sequences SET next_value = LAST_INSERT_ID(next_value + %s) WHERE name = 'seat'", (count,)
    )
    cursor.execute("SELECT LAST_INSERT_ID()")
    return int(cursor.fetchone()[0]) - count


def _insert_seats(cursor: Cursor, section: Section) -> None:
    rows = [
        (seat_id, section.performance_id, section.section_id, *section.position_of(seat_id))
        for seat_id in range(section.first_seat_id, section.last_seat_id + 1)
    ]
    for start in range(0, len(rows), INSERT_CHUNK):
        cursor.executemany(
            "INSERT INTO seats (seat_id, performance_id, section_id, seat_row, seat_number)"
            " VALUES (%s, %s, %s, %s, %s)",
            rows[start : start + INSERT_CHUNK],
        )


def _read_performance(cursor: Cursor, performance_id: int) -> Performance | None:
    cursor.execute(
        "SELECT performance_id, event_id, starts_at, strategy FROM performances WHERE performance_id = %s",
        (performance_id,),
    )
    row = cursor.fetchone()
    if row is None:
        return None
    cursor.execute(
        "SELECT section_id, name, price, seat_rows, seats_per_row, first_seat_id FROM sections"
        " WHERE performance_id = %s ORDER BY first_seat_id",
        (performance_id,),
    )
    sections = tuple(
        Section(
            section_id=s[0],
            performance_id=performance_id,
            name=s[1],
            price=int(s[2]),
            rows=s[3],
            seats_per_row=s[4],
            first_seat_id=s[5],
        )
        for s in cursor.fetchall()
    )
    return Performance(
        performance_id=row[0], event_id=row[1], starts_at=row[2], strategy=row[3], sections=sections
    )


class BookingRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    def insert(self, booking: Booking) -> None:
        """Store a booking and its seats in one transaction.

        Raises BookingExists if the id is taken and SeatAlreadyBooked if the unique guard refuses a seat.
        """
        with _integrity_errors_as_domain_errors(booking), self._db.transaction() as cursor:
            _insert_booking_rows(cursor, booking)

    def insert_if_seats_free(self, booking: Booking) -> list[int]:
        """Check, without any lock, that no active booking holds the seats, then store the booking.

        -> the seats found taken (nothing stored), or [] when stored. Callers that run this concurrently for
        the same seats rely on the unique guard to fence the loser (SeatAlreadyBooked).
        """
        with _integrity_errors_as_domain_errors(booking), self._db.transaction() as cursor:
            taken = _taken_seats(cursor, booking.seat_ids)
            if not taken:
                _insert_booking_rows(cursor, booking)
            return taken

    def insert_with_seat_row_locks(self, booking: Booking) -> list[int]:
        """`db_lock`: lock the seat rows (ascending order, NOWAIT), check them free, store the booking.

        -> the seats found taken (nothing stored), or [] when stored. Raises SeatsLocked at once if another
        transaction holds one of the rows: this strategy never waits for a lock. (NOWAIT's refusal is an
        OperationalError; the pool keeps the connection, see `_breaks_the_connection`.)
        """
        placeholders = ", ".join(["%s"] * len(booking.seat_ids))
        with _integrity_errors_as_domain_errors(booking), self._db.transaction() as cursor:
            try:
                cursor.execute(
                    f"SELECT seat_id FROM seats WHERE seat_id IN ({placeholders})"
                    " ORDER BY seat_id FOR UPDATE NOWAIT",
                    booking.seat_ids,
                )
            except pymysql.err.OperationalError as exc:
                if exc.args[0] in LOCK_NOT_GRANTED:
                    raise SeatsLocked(list(booking.seat_ids)) from exc
                raise
            # This read runs after the locks are granted, so its snapshot includes every commit made by
            # the previous holder of these rows.
            taken = _taken_seats(cursor, booking.seat_ids)
            if not taken:
                _insert_booking_rows(cursor, booking)
            return taken

    def get(self, booking_id: str) -> Booking | None:
        with self._db.transaction() as cursor:
            return _read_booking(cursor, booking_id)

    def cancel(self, booking_id: str) -> tuple[Booking | None, Booking | None]:
        """Cancel a booking that holds seats -> (before, after); after is None if it cannot be cancelled."""
        with self._db.transaction() as cursor:
            before = _read_booking(cursor, booking_id, for_update=True)
            if before is None or not before.status.holds_seats:
                return before, None
            cursor.execute(
                "UPDATE bookings SET status = 'CANCELLED', reason = %s WHERE booking_id = %s",
                ("cancelled by the user", booking_id),
            )
            cursor.execute("UPDATE booking_seats SET active = NULL WHERE booking_id = %s", (booking_id,))
            after = _read_booking(cursor, booking_id)
        return before, after

    def active_seat_holders(self, performance_id: int) -> dict[int, tuple[str, BookingStatus]]:
        """seat id -> (booking id, status) for every seat an active booking holds."""
        with self._db.transaction() as cursor:
            cursor.execute(
                "SELECT bs.seat_id, b.booking_id, b.status FROM booking_seats bs"
                " JOIN bookings b ON b.booking_id = bs.booking_id"
                " WHERE bs.performance_id = %s AND bs.active = 1",
                (performance_id,),
            )
            return {row[0]: (row[1], BookingStatus(row[2])) for row in cursor.fetchall()}

    def log_reconcile(self, entry: ReconcileEntry) -> None:
        """Append to reconcile_log; a repeated dedup key (a retried compensation) is logged once."""
        with self._db.transaction() as cursor:
            cursor.execute(
                "INSERT IGNORE INTO reconcile_log (dedup_key, booking_id, performance_id, action, detail)"
                " VALUES (%s, %s, %s, %s, %s)",
                (
                    entry.dedup_key,
                    entry.booking_id,
                    entry.performance_id,
                    entry.action,
                    json.dumps(entry.detail, sort_keys=True, default=str),
                ),
            )


def _insert_booking_rows(cursor: Cursor, booking: Booking) -> None:
    active = 1 if booking.status.holds_seats else None
    cursor.execute(
        "INSERT INTO bookings (booking_id, performance_id, user_id, status, strategy, reason)"
        " VALUES (%s, %s, %s, %s, %s, %s)",
        (
            booking.booking_id,
            booking.performance_id,
            booking.user_id,
            booking.status.value,
            booking.strategy,
            booking.reason,
        ),
    )
    cursor.executemany(
        "INSERT INTO booking_seats (booking_id, seat_id, performance_id, active) VALUES (%s, %s, %s, %s)",
        [(booking.booking_id, seat, booking.performance_id, active) for seat in booking.seat_ids],
    )


def _taken_seats(cursor: Cursor, seat_ids: tuple[int, ...]) -> list[int]:
    placeholders = ", ".join(["%s"] * len(seat_ids))
    cursor.execute(
        f"SELECT seat_id FROM booking_seats WHERE seat_id IN ({placeholders}) AND active = 1"
        " ORDER BY seat_id",
        seat_ids,
    )
    return [row[0] for row in cursor.fetchall()]


@contextlib.contextmanager
def _integrity_errors_as_domain_errors(booking: Booking) -> Iterator[None]:
    try:
        yield
    except pymysql.err.IntegrityError as exc:
        if _is_seat_guard_violation(exc):
            raise SeatAlreadyBooked(str(exc.args[1])) from exc
        if exc.args[0] == ER_DUP_ENTRY:
            raise BookingExists(booking.booking_id) from exc
        raise


def _read_booking(cursor: Cursor, booking_id: str, for_update: bool = False) -> Booking | None:
    cursor.execute(
        "SELECT booking_id, performance_id, user_id, status, strategy, reason FROM bookings"
        " WHERE booking_id = %s" + (" FOR UPDATE" if for_update else ""),
        (booking_id,),
    )
    row = cursor.fetchone()
    if row is None:
        return None
    cursor.execute("SELECT seat_id FROM booking_seats WHERE booking_id = %s ORDER BY seat_id", (booking_id,))
    seat_ids = tuple(r[0] for r in cursor.fetchall())
    return Booking(
        booking_id=row[0],
        performance_id=row[1],
        user_id=row[2],
        seat_ids=seat_ids,
        status=BookingStatus(row[3]),
        strategy=row[4],
        reason=row[5],
    )
