"""MySQL (MariaDB locally, RDS in AWS): connection pool, transactions and the repositories.

Connections come from a DBUtils PooledDB: bounded (a burst waits for a connection instead of opening
thousands), reused across requests, and in Lambda one small pool per container. Every unit of work is one
explicit transaction (`begin()` also tells DBUtils not to transparently reconnect in the middle of one).
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import unquote, urlsplit

import pymysql
from dbutils.pooled_db import PooledDB
from pymysql.cursors import Cursor

from chalicelib.adapters.circuit import CircuitBreaker, CircuitOpen
from chalicelib.domain.best_available import choose_seats
from chalicelib.domain.errors import (
    BookingExists,
    CommitUncertain,
    IdempotencyKeyTaken,
    SeatAlreadyBooked,
    SeatsLocked,
    ServiceUnavailable,
    UserLimit,
)
from chalicelib.domain.holds import HoldChange, HoldOutcome, confirm_outcome, extend_outcome, settled_as
from chalicelib.domain.models import (
    HOLD_EXPIRED_REASON,
    Booking,
    BookingStatus,
    Event,
    EventSpec,
    Performance,
    ReconcileEntry,
    Section,
)

log = logging.getLogger(__name__)
ER_DUP_ENTRY = 1062
# NOWAIT refused a row lock: MariaDB reports ER_LOCK_WAIT_TIMEOUT, MySQL 8 ER_LOCK_NOWAIT.
LOCK_NOT_GRANTED = (1205, 3572)
SEAT_GUARD_KEY = "uq_one_active_booking_per_seat"
IDEMPOTENCY_KEY = "uq_booking_user_key"
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
        except BaseException as exc:
            _rollback_quietly(connection)
            connection.close()  # back to the pool
            if isinstance(exc, pymysql.err.OperationalError | pymysql.err.InterfaceError):
                raise ServiceUnavailable("database unavailable") from exc
            raise
        try:
            connection.commit()
        except (pymysql.err.OperationalError, pymysql.err.InterfaceError) as exc:
            # The COMMIT was sent and no answer came back: it may have been applied (a lost acknowledgement)
            # or may still be waiting (a COMMIT blocked by FLUSH TABLES WITH READ LOCK goes on after the
            # client gave up). Only `outcome_of_uncertain_commit` can tell which.
            raise CommitUncertain(_server_thread_id(connection)) from exc
        finally:
            connection.close()

    def outcome_of_uncertain_commit(
        self, thread_id: int | None, query: str, args: tuple, wait_seconds: float = 5.0
    ) -> bool | None:
        """Whether an uncertain COMMIT took effect, as `query` (a read that finds its rows) tells once it is
        final: its server thread is killed first (a COMMIT still waiting is then rolled back) and the read
        waits until the thread is gone. None when MySQL cannot be reached to make sure. Everything runs on
        a connection of its own: the pool's may still hold the broken one."""
        if thread_id is None:
            return None
        try:
            connection = pymysql.connect(**self._probe_args, database=self.database, autocommit=True)
        except pymysql.err.MySQLError:
            return None
        try:
            with connection.cursor() as cursor:
                with contextlib.suppress(pymysql.err.OperationalError, pymysql.err.InternalError):
                    cursor.execute("KILL CONNECTION %s", (thread_id,))  # gone already: error 1094
                if not _gone(cursor, thread_id, time.monotonic() + wait_seconds):
                    return None
                cursor.execute(query, args)
                return cursor.fetchone() is not None
        except pymysql.err.MySQLError:
            return None
        finally:
            connection.close()

    def ping(self) -> bool:
        with self.transaction() as cursor:
            cursor.execute("SELECT 1")
            return cursor.fetchone() == (1,)

    def close(self) -> None:
        self._pool.close()


def _gone(cursor: Cursor, thread_id: int, deadline: float) -> bool:
    while time.monotonic() < deadline:
        cursor.execute("SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE ID = %s", (thread_id,))
        if cursor.fetchone()[0] == 0:
            return True
        time.sleep(0.05)
    return False


def _server_thread_id(connection) -> int | None:
    """The MySQL server's id of a pooled connection (DBUtils wraps pymysql's connection twice)."""
    raw = getattr(getattr(connection, "_con", None), "_con", None)
    try:
        return raw.thread_id() if raw is not None else None
    except (AttributeError, TypeError, IndexError):
        return None


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
            "INSERT INTO performances (event_id, starts_at, starts_at_utc, strategy, admit_per_second)"
            " VALUES (%s, %s, %s, %s, %s)",
            (
                event_id,
                starts_at.isoformat(),
                starts_at.astimezone(UTC).replace(tzinfo=None),
                performance_spec.strategy,
                performance_spec.admit_per_second,
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
            admit_per_second=performance_spec.admit_per_second,
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
        "SELECT performance_id, event_id, starts_at, strategy, admit_per_second FROM performances"
        " WHERE performance_id = %s",
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
        performance_id=row[0],
        event_id=row[1],
        starts_at=row[2],
        strategy=row[3],
        sections=sections,
        admit_per_second=row[4],
    )


@dataclass(frozen=True)
class Settlement:
    """A booking after an attempt to make it final: `changed` is False when it was final already (someone
    else settled it first); `booking` is None when MySQL has no booking of that id."""

    booking: Booking | None
    changed: bool


@dataclass
class _Write:
    """What the statements of one transaction share: its "now" (the repository's clock, read once), the
    per-user limit to check where seats become active, and the holds it expired in passing (announced after
    the commit)."""

    now: float
    max_seats_per_user: int | None = None
    expired: list[Booking] = field(default_factory=list)
    allowances_locked: set[tuple[int, str]] = field(default_factory=set)
    # Seats whose holders this transaction has read (their lapsed holders expired): read once, not again
    # before the seat rows are written (nothing else in the transaction can change them).
    holders_read: set[int] = field(default_factory=set)


def _utc(epoch_seconds: float | None) -> datetime | None:
    """Epoch seconds -> the naive UTC DATETIME(6) that MySQL stores."""
    return None if epoch_seconds is None else datetime.fromtimestamp(epoch_seconds, UTC).replace(tzinfo=None)


def _epoch(value: datetime | None) -> float | None:
    return None if value is None else value.replace(tzinfo=UTC).timestamp()


class BookingRepository:
    """The bookings: MySQL is the journal of every accepted booking and the arbiter of its fate.

    A booking is written once when it is accepted (PENDING, holding its seats or waiting in line) or decided
    at once (CONFIRMED), and changes status at most once more, from PENDING, with a compare-and-set under the
    row's lock (`settle`): whoever settles a PENDING booking first decides it, every later attempt reads the
    decision. Seat holds are `booking_seats` rows with `active = 1`, fenced by the unique guard.

    Holds: a booking with an `expires_at` holds its seats until then (PENDING, then HELD), and nothing from
    then on. Every write that takes seats first expires their lapsed holders, in its own transaction
    (`_seat_holders`, `_insert_seat_rows`), so a lapsed hold's seats are free for the next request at once
    and the unique guard still settles every race. `clock` (epoch seconds) is the one judge of "now": tests
    inject one. `on_expired` hears of each booking a write expired in passing, after its commit (bootstrap
    wires it to give the seats back in Redis and in stream_state's ledger).
    """

    def __init__(
        self, db: Database, clock: Callable[[], float] = time.time, max_seats_per_user: int | None = None
    ) -> None:
        self._db = db
        self.clock = clock
        # MAX_SEATS_PER_USER, checked wherever a booking's seats become active (`_insert_seat_rows`).
        self.max_seats_per_user = max_seats_per_user
        self.on_expired: Callable[[Booking], object] = lambda booking: None

    # writes at acceptance -------------------------------------------------------------------------------
    def insert(self, booking: Booking, idempotency_key: str | None = None) -> None:
        """Store a booking; its seats are held (active) while its status holds seats (PENDING, CONFIRMED).

        Raises BookingExists if the id is taken, IdempotencyKeyTaken if the user's key is, SeatAlreadyBooked
        if the unique guard refuses a seat, ServiceUnavailable if MySQL cannot say whether it was stored.
        """
        self._insert(
            booking,
            idempotency_key,
            lambda cursor, w: _insert_booking_rows(
                cursor, booking, _lock_allowance(cursor, booking, w), key=idempotency_key
            ),
        )

    def insert_in_line(self, booking: Booking, idempotency_key: str | None = None) -> None:
        """Store a PENDING booking that waits in line and holds nothing yet (fifo_partition, stream_state):
        no seat rows until it is decided (`settle`, `decide_in_line`)."""
        self._insert(
            booking,
            idempotency_key,
            lambda cursor, w: _insert_booking_row(cursor, booking, idempotency_key),
        )

    def insert_if_seats_free(self, booking: Booking, idempotency_key: str | None = None) -> dict[int, str]:
        """Check, without any lock, that no active booking holds the seats, then store the booking.

        -> the seats found taken with their holders (nothing stored), or {} when stored. Callers that run
        this concurrently for the same seats rely on the unique guard to fence the loser (SeatAlreadyBooked).
        """
        taken: dict[int, str] = {}

        def write(cursor: Cursor, w: _Write) -> None:
            _lock_allowance(cursor, booking, w)
            taken.update(_seat_holders(cursor, booking.seat_ids, w))
            if not taken:
                _insert_booking_rows(cursor, booking, w, key=idempotency_key)

        self._insert(booking, idempotency_key, write)
        return taken

    def insert_with_seat_row_locks(
        self, booking: Booking, idempotency_key: str | None = None
    ) -> dict[int, str]:
        """`db_lock`: lock the seat rows (ascending order, NOWAIT), check them free, store the booking.

        -> the seats found taken with their holders (nothing stored), or {} when stored. Raises SeatsLocked
        at once if another transaction holds one of the rows: this strategy never waits for a lock. (NOWAIT's
        refusal is an OperationalError; the pool keeps the connection, see `_breaks_the_connection`.)
        """
        taken: dict[int, str] = {}

        def write(cursor: Cursor, w: _Write) -> None:
            _lock_seat_rows(cursor, booking.seat_ids)
            # The reads below run after the locks are granted, so their snapshot includes every commit made
            # by the previous holder of these rows (and of the user's allowance).
            _lock_allowance(cursor, booking, w)
            taken.update(_seat_holders(cursor, booking.seat_ids, w))
            if not taken:
                _insert_booking_rows(cursor, booking, w, key=idempotency_key)

        self._insert(booking, idempotency_key, write)
        return taken

    def insert_best_available(
        self, booking: Booking, section: Section, count: int, idempotency_key: str | None = None
    ) -> Booking | None:
        """`db_lock` and `redis_lock` for `{"section_id", "count"}`: choose the best available seats and store
        the booking with them, in one transaction -> the booking as stored, None if the section has no such
        seats free (nothing stored). Choosers of one section take turns on the section's row (a wait: a
        choice takes a few statements); the chosen seats are then locked NOWAIT and checked free as a named
        request's are (SeatsLocked if a named request holds one right now: refused at once, never waited)."""
        chosen: list[Booking] = []

        def write(cursor: Cursor, w: _Write) -> None:
            cursor.execute("SELECT 1 FROM sections WHERE section_id = %s FOR UPDATE", (section.section_id,))
            _lock_allowance(cursor, booking, w)
            seats = choose_seats(section, _free_seats(cursor, section, w.now), count)
            if seats is None:
                return
            mine = booking.with_seats(seats)
            _lock_seat_rows(cursor, mine.seat_ids)
            if _seat_holders(cursor, mine.seat_ids, w):  # a named request's commit since our read
                raise SeatsLocked(list(mine.seat_ids))
            _insert_booking_rows(cursor, mine, w, key=idempotency_key)
            chosen.append(mine)

        self._insert(booking, idempotency_key, write)
        return chosen[0] if chosen else None

    def _insert(self, booking: Booking, key: str | None, write: Callable[[Cursor, _Write], None]) -> None:
        w = self._write()
        try:
            with _integrity_errors_as_domain_errors(booking), self._db.transaction() as cursor:
                write(cursor, w)
            self._announce(w.expired)
        except IdempotencyKeyTaken:
            raise IdempotencyKeyTaken(self._booking_id_of_key(booking.user_id, key)) from None
        except CommitUncertain as exc:
            # No answer to the COMMIT: ask MySQL what it holds, once the transaction can no longer change.
            stored = self._db.outcome_of_uncertain_commit(
                exc.thread_id, "SELECT 1 FROM bookings WHERE booking_id = %s", (booking.booking_id,)
            )
            if stored is None:
                raise
            if not stored:
                raise ServiceUnavailable("database unavailable; nothing was stored") from exc
            # Committed: the write succeeded, whatever the connection said.
            self._announce(w.expired)

    def _write(self) -> _Write:
        return _Write(self.clock(), self.max_seats_per_user)

    def _announce(self, expired: list[Booking]) -> None:
        """Tell `on_expired` of the holds a committed write expired in passing (never fails the write: the
        sweeper gives back whatever this missed)."""
        for booking in expired:
            try:
                self.on_expired(booking)
            except Exception as exc:  # Redis away: the map is realigned later, MySQL has decided
                log.warning("booking %s expired, its seats not yet given back elsewhere: %s", booking, exc)

    def _booking_id_of_key(self, user_id: str, key: str | None) -> str:
        with self._db.transaction() as cursor:
            cursor.execute(
                "SELECT booking_id FROM bookings WHERE user_id = %s AND idempotency_key = %s", (user_id, key)
            )
            row = cursor.fetchone()
        if row is None:  # the key's booking was there a moment ago: bookings are never deleted
            raise ServiceUnavailable("the booking of this Idempotency-Key could not be read back")
        return row[0]

    # settling ---------------------------------------------------------------------------------------------
    def settle(
        self,
        booking_id: str,
        status: BookingStatus,
        reason: str | None = None,
        seat_ids: tuple[int, ...] | None = None,
    ) -> Settlement:
        """PENDING -> `status` (a final one), under the row's lock; a booking already final is left as it is.

        CONFIRMED activates the seats (inserting them for a booking that waited in line): raises
        SeatAlreadyBooked, with nothing changed, if the unique guard refuses one. Any other status gives the
        seats up. One transaction, so a booking never reads final while its seats say otherwise.

        A hold: CONFIRMED makes it HELD (the user confirms it later), and one whose time has run out
        becomes EXPIRED instead of taking anything. `seat_ids`: a best available booking's seats, as the
        stream_state ledger chose them in line (written to its seat list first)."""
        w = self._write()
        with _guard_violation_as_seat_already_booked(), self._db.transaction() as cursor:
            booking = _read_booking(cursor, booking_id, for_update=True)
            if booking is None or booking.status is not BookingStatus.PENDING:
                return Settlement(booking, changed=False)
            status, reason = settled_as(booking, status, reason, w.now)
            if seat_ids and booking.wanted is not None and not booking.seat_ids:
                booking = booking.with_seats(seat_ids)
                cursor.execute(
                    "UPDATE bookings SET seat_list = %s WHERE booking_id = %s",
                    (_seat_list(booking.seat_ids), booking_id),
                )
            if status.holds_seats:
                _lock_allowance(cursor, booking, w)
            _set_status(cursor, booking, status, reason, w)
            settled = Settlement(_read_booking(cursor, booking_id), changed=True)
        self._announce(w.expired)
        return settled

    def decide_in_line(self, booking_id: str) -> Settlement:
        """`fifo_partition`'s decision, in the line's order: CONFIRMED if no active booking holds any of the
        seats, else REJECTED. A booking that is not PENDING (cancelled, failed, decided) is left alone. A hold
        is HELD instead of CONFIRMED, EXPIRED if its time ran out while it waited."""
        w = self._write()
        try:
            with _guard_violation_as_seat_already_booked(), self._db.transaction() as cursor:
                booking = _read_booking(cursor, booking_id, for_update=True)
                if booking is None or booking.status is not BookingStatus.PENDING:
                    return Settlement(booking, changed=False)
                _lock_allowance(cursor, booking, w)
                if booking.wanted is not None and not booking.seat_ids:
                    booking = _choose_in_line(cursor, booking, w)
                    if not booking.seat_ids:
                        count = booking.wanted[1]
                        reason = f"no {count} seats of section {booking.wanted[0]} were free at its turn"
                        _set_status(cursor, booking, BookingStatus.REJECTED, reason, w)
                        return Settlement(_read_booking(cursor, booking_id), changed=True)
                taken = sorted(_seat_holders(cursor, booking.seat_ids, w))
                if taken:
                    status = BookingStatus.REJECTED
                    reason: str | None = f"seat(s) {taken} were taken earlier in line"
                else:
                    status, reason = settled_as(booking, BookingStatus.CONFIRMED, None, w.now)
                _set_status(cursor, booking, status, reason, w)
                settled = Settlement(_read_booking(cursor, booking_id), changed=True)
            self._announce(w.expired)
            return settled
        except UserLimit:  # the user's other bookings hold too many seats by the time this one's turn came
            return self.settle(booking_id, BookingStatus.REJECTED, UserLimit.reason)
        except SeatAlreadyBooked:
            # A booking of another line (it starts in another section) took a shared seat in the same instant.
            return self.settle(booking_id, BookingStatus.REJECTED, "a seat was taken in the same instant")

    def cancel(self, booking_id: str) -> tuple[Booking | None, Booking | None]:
        """Cancel a booking that is not final yet or CONFIRMED -> (before, after); after is None if it cannot
        be cancelled. A hold whose time ran out cannot: it is EXPIRED (written so here if nothing had)."""
        now = self.clock()
        with self._db.transaction() as cursor:
            before = _read_booking(cursor, booking_id, for_update=True)
            if before is None or not before.status.holds_seats:
                return before, None
            if before.lapsed(now):
                _set_status(cursor, before, BookingStatus.EXPIRED, HOLD_EXPIRED_REASON, _Write(now))
                expired = _read_booking(cursor, booking_id)
                after = None
            else:
                expired = None
                _set_status(cursor, before, BookingStatus.CANCELLED, "cancelled by the user", _Write(now))
                after = _read_booking(cursor, booking_id)
        if expired is not None:
            self._announce([expired])
            return expired, None
        return before, after

    # holds ----------------------------------------------------------------------------------------------
    def confirm_hold(self, booking_id: str, payment_reference: str) -> HoldChange:
        """HELD -> CONFIRMED with the payment reference, if its time has not run out (compare-and-set under
        the row's lock: of a confirm and an expiry that race, exactly one wins). A booking CONFIRMED with
        this same reference answers the same again (domain/holds.py)."""
        return self._change_hold(
            booking_id,
            lambda booking, now: confirm_outcome(booking, now, payment_reference),
            "status = 'CONFIRMED', reason = NULL, payment_reference = %s",
            lambda now: (payment_reference,),
        )

    def extend_hold(self, booking_id: str, hold_seconds: float, max_extensions: int) -> HoldChange:
        """A HELD booking's `expires_at` -> now + `hold_seconds`, at most `max_extensions` times, if its time
        has not run out (under the row's lock, as `confirm_hold`)."""
        return self._change_hold(
            booking_id,
            lambda booking, now: extend_outcome(booking, now, max_extensions),
            "expires_at = %s, extensions = extensions + 1",
            lambda now: (_utc(now + hold_seconds),),
        )

    def _change_hold(
        self,
        booking_id: str,
        outcome_of: Callable[[Booking, float], HoldOutcome],
        assignments: str,
        values: Callable[[float], tuple],
    ) -> HoldChange:
        """Under the booking row's lock: the domain's outcome for it now (domain/holds.py); a lapsed hold is
        expired here; a CHANGED one gets the `assignments` (SQL SET, with `values(now)`)."""
        now = self.clock()
        with self._db.transaction() as cursor:
            booking = _read_booking(cursor, booking_id, for_update=True)
            if booking is None:
                return HoldChange(HoldOutcome.NOT_HELD, None)
            outcome = outcome_of(booking, now)
            if outcome is HoldOutcome.LAPSED and booking.lapsed(now):
                return self._expire_locked(cursor, booking, now)
            if outcome is not HoldOutcome.CHANGED:
                return HoldChange(outcome, booking)
            cursor.execute(
                f"UPDATE bookings SET {assignments} WHERE booking_id = %s", (*values(now), booking_id)
            )
            return HoldChange(HoldOutcome.CHANGED, _read_booking(cursor, booking_id))

    def expire(self, booking_id: str) -> Settlement:
        """A lapsed hold -> EXPIRED, its seats released (the sweeper); anything else is left as it is."""
        now = self.clock()
        with self._db.transaction() as cursor:
            booking = _read_booking(cursor, booking_id, for_update=True)
            if booking is None or not booking.lapsed(now):
                return Settlement(booking, changed=False)
            change = self._expire_locked(cursor, booking, now)
        return Settlement(change.booking, changed=True)

    def lapsed_holds(self, limit: int = 1_000) -> list[Booking]:
        """Bookings whose hold has run out and that nothing has written EXPIRED yet, oldest deadline first."""
        with self._db.transaction() as cursor:
            cursor.execute(
                f"SELECT {BOOKING_COLUMNS} FROM bookings WHERE status IN ('PENDING', 'HELD')"
                " AND expires_at <= %s ORDER BY expires_at LIMIT %s",
                (_utc(self.clock()), limit),
            )
            return [_booking_of(row) for row in cursor.fetchall()]

    @staticmethod
    def _expire_locked(cursor: Cursor, booking: Booking, now: float) -> HoldChange:
        _set_status(cursor, booking, BookingStatus.EXPIRED, HOLD_EXPIRED_REASON, _Write(now))
        return HoldChange(HoldOutcome.LAPSED, _read_booking(cursor, booking.booking_id), expired=True)

    # reads --------------------------------------------------------------------------------------------------
    def get(self, booking_id: str) -> Booking | None:
        with self._db.transaction() as cursor:
            return _read_booking(cursor, booking_id)

    def holders_of(self, seat_ids: Iterable[int]) -> dict[int, tuple[str, BookingStatus]]:
        """seat id -> (booking id, status) for those of the seats an active booking holds (a lapsed hold
        holds none, whether or not anything has written EXPIRED yet)."""
        seats = tuple(seat_ids)
        if not seats:
            return {}
        placeholders = ", ".join(["%s"] * len(seats))
        with self._db.transaction() as cursor:
            cursor.execute(
                "SELECT bs.seat_id, b.booking_id, b.status FROM booking_seats bs"
                " JOIN bookings b ON b.booking_id = bs.booking_id"
                f" WHERE bs.seat_id IN ({placeholders}) AND bs.active = 1 AND {NOT_LAPSED}",
                (*seats, _utc(self.clock())),
            )
            return {row[0]: (row[1], BookingStatus(row[2])) for row in cursor.fetchall()}

    def active_seat_holders(self, performance_id: int) -> dict[int, tuple[str, BookingStatus]]:
        """seat id -> (booking id, status) for every seat an active booking holds (lapsed holds aside: a
        map rebuilt, repaired or handed to stream_state's ledger from this shows their seats free)."""
        with self._db.transaction() as cursor:
            cursor.execute(
                "SELECT bs.seat_id, b.booking_id, b.status FROM booking_seats bs"
                " JOIN bookings b ON b.booking_id = bs.booking_id"
                f" WHERE bs.performance_id = %s AND bs.active = 1 AND {NOT_LAPSED}",
                (performance_id, _utc(self.clock())),
            )
            return {row[0]: (row[1], BookingStatus(row[2])) for row in cursor.fetchall()}

    def pending_accepted_before(
        self, epoch_seconds: float, performance_id: int | None = None, limit: int = 1_000
    ) -> list[Booking]:
        """PENDING bookings accepted before `epoch_seconds`, oldest first (the reconcile job's sweep)."""
        query = (
            f"SELECT {BOOKING_COLUMNS} FROM bookings"
            " WHERE status = 'PENDING' AND created_at < FROM_UNIXTIME(%s)"
        )
        args: list[object] = [epoch_seconds]
        if performance_id is not None:
            query += " AND performance_id = %s"
            args.append(performance_id)
        with self._db.transaction() as cursor:
            cursor.execute(query + " ORDER BY created_at LIMIT %s", [*args, limit])
            return [_booking_of(row) for row in cursor.fetchall()]

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


def _insert_booking_row(cursor: Cursor, booking: Booking, key: str | None) -> None:
    cursor.execute(
        "INSERT INTO bookings (booking_id, performance_id, user_id, seat_list, status, strategy, reason,"
        " idempotency_key, expires_at, wanted_section_id, wanted_count)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
        (
            booking.booking_id,
            booking.performance_id,
            booking.user_id,
            _seat_list(booking.seat_ids),
            booking.status.value,
            booking.strategy,
            booking.reason,
            key,
            _utc(booking.expires_at),
            *(booking.wanted or (None, None)),
        ),
    )


def _insert_seat_rows(cursor: Cursor, booking: Booking, active: bool, w: _Write) -> None:
    if active:  # a lapsed hold on one of these seats gives way first (the unique guard would refuse us)
        _lock_allowance(cursor, booking, w)
        if not w.holders_read.issuperset(booking.seat_ids):
            _seat_holders(cursor, booking.seat_ids, w)
        _check_allowance(cursor, booking, w)
    cursor.executemany(
        "INSERT INTO booking_seats (booking_id, seat_id, performance_id, active) VALUES (%s, %s, %s, %s)",
        [
            (booking.booking_id, seat, booking.performance_id, 1 if active else None)
            for seat in booking.seat_ids
        ],
    )


def _lock_seat_rows(cursor: Cursor, seat_ids: tuple[int, ...]) -> None:
    """The seat rows' locks, ascending, NOWAIT: SeatsLocked at once if another transaction holds one."""
    placeholders = ", ".join(["%s"] * len(seat_ids))
    try:
        cursor.execute(
            f"SELECT seat_id FROM seats WHERE seat_id IN ({placeholders}) ORDER BY seat_id FOR UPDATE NOWAIT",
            seat_ids,
        )
    except pymysql.err.OperationalError as exc:
        if exc.args[0] in LOCK_NOT_GRANTED:
            raise SeatsLocked(list(seat_ids)) from exc
        raise


def _free_seats(cursor: Cursor, section: Section, now: float) -> set[int]:
    """The section's seats no booking holds (a lapsed hold holds none)."""
    cursor.execute(
        "SELECT s.seat_id FROM seats s WHERE s.section_id = %s AND NOT EXISTS ("
        " SELECT 1 FROM booking_seats bs JOIN bookings b ON b.booking_id = bs.booking_id"
        " WHERE bs.seat_id = s.seat_id AND bs.active = 1 AND NOT (b.status IN ('PENDING', 'HELD')"
        " AND b.expires_at IS NOT NULL AND b.expires_at <= %s))",
        (section.section_id, _utc(now)),
    )
    return {row[0] for row in cursor.fetchall()}


def _choose_in_line(cursor: Cursor, booking: Booking, w: _Write) -> Booking:
    """fifo_partition's best available, at the booking's turn: the section's free seats now, chosen and
    written to the booking's seat list (left empty when none are free together)."""
    section_id, count = booking.wanted  # type: ignore[misc]
    cursor.execute(
        "SELECT section_id, performance_id, name, price, seat_rows, seats_per_row, first_seat_id"
        " FROM sections WHERE section_id = %s FOR UPDATE",
        (section_id,),
    )
    row = cursor.fetchone()
    section = Section(row[0], row[1], row[2], int(row[3]), row[4], row[5], row[6])
    seats = choose_seats(section, _free_seats(cursor, section, w.now), count)
    if seats is None:
        return booking
    chosen = booking.with_seats(seats)
    cursor.execute(
        "UPDATE bookings SET seat_list = %s WHERE booking_id = %s", (_seat_list(seats), booking.booking_id)
    )
    return chosen


def _insert_booking_rows(cursor: Cursor, booking: Booking, w: _Write, key: str | None = None) -> None:
    _insert_booking_row(cursor, booking, key)
    _insert_seat_rows(cursor, booking, booking.status.holds_seats, w)


def _lock_allowance(cursor: Cursor, booking: Booking, w: _Write) -> _Write:
    """MAX_SEATS_PER_USER, part one: lock the user's row of user_allowances (created if need be: an upsert
    takes the row's exclusive lock at once, where INSERT IGNORE + FOR UPDATE takes a shared one first and
    deadlocks two of the user's requests). Every transaction that may give the user seats takes it before
    its first plain read, so that read's snapshot — which the count (`_check_allowance`) uses — includes the
    last commit of the previous holder: the user's writes are counted one after the other. A locking count
    instead would wait on the user's other bookings' rows while their writers wait for this lock."""
    key = (booking.performance_id, booking.user_id)
    if w.max_seats_per_user is None or key in w.allowances_locked:
        return w
    cursor.execute(
        "INSERT INTO user_allowances (performance_id, user_id) VALUES (%s, %s)"
        " ON DUPLICATE KEY UPDATE user_id = user_id",
        key,
    )
    w.allowances_locked.add(key)
    return w


def _check_allowance(cursor: Cursor, booking: Booking, w: _Write) -> None:
    """MAX_SEATS_PER_USER, part two: the seats the user's other bookings hold (lapsed holds hold none) plus
    this booking's; raises UserLimit (the transaction rolls back) past the limit."""
    if w.max_seats_per_user is None:
        return
    cursor.execute(
        "SELECT COUNT(*) FROM bookings b JOIN booking_seats bs ON bs.booking_id = b.booking_id"
        " WHERE b.performance_id = %s AND b.user_id = %s AND b.booking_id <> %s AND bs.active = 1"
        " AND NOT (b.status IN ('PENDING', 'HELD') AND b.expires_at IS NOT NULL AND b.expires_at <= %s)",
        (booking.performance_id, booking.user_id, booking.booking_id, _utc(w.now)),
    )
    held = int(cursor.fetchone()[0])
    if held + len(booking.seat_ids) > w.max_seats_per_user:
        raise UserLimit(max(0, w.max_seats_per_user - held), w.max_seats_per_user)


def _set_status(
    cursor: Cursor,
    booking: Booking,
    status: BookingStatus,
    reason: str | None,
    w: _Write,
) -> None:
    """Move a locked booking to `status`, its seat rows with it (inserted if it waited in line)."""
    cursor.execute("SELECT COUNT(*) FROM booking_seats WHERE booking_id = %s", (booking.booking_id,))
    if cursor.fetchone()[0] == 0:
        _insert_seat_rows(cursor, booking, status.holds_seats, w)
    else:
        cursor.execute(
            "UPDATE booking_seats SET active = %s WHERE booking_id = %s",
            (1 if status.holds_seats else None, booking.booking_id),
        )
    cursor.execute(
        "UPDATE bookings SET status = %s, reason = %s WHERE booking_id = %s",
        (status.value, reason, booking.booking_id),
    )


def _seat_holders(cursor: Cursor, seat_ids: tuple[int, ...], w: _Write) -> dict[int, str]:
    """seat id -> booking id, for those of the seats an active booking holds. A holder whose hold has run
    out is expired here first (under its row's lock; appended to `w.expired`) and holds nothing."""
    if not seat_ids:  # a best available booking before its seats are chosen
        return {}
    w.holders_read.update(seat_ids)
    now = w.now
    placeholders = ", ".join(["%s"] * len(seat_ids))
    cursor.execute(
        "SELECT bs.seat_id, bs.booking_id, b.expires_at, b.status FROM booking_seats bs"
        " JOIN bookings b ON b.booking_id = bs.booking_id"
        f" WHERE bs.seat_id IN ({placeholders}) AND bs.active = 1 ORDER BY bs.seat_id",
        seat_ids,
    )
    holders: dict[int, str] = {}
    lapsed: set[str] = set()
    for seat, booking_id, expires_at, status in cursor.fetchall():
        if expires_at is not None and status in ("PENDING", "HELD") and _epoch(expires_at) <= now:
            lapsed.add(booking_id)
        else:
            holders[seat] = booking_id
    for booking_id in sorted(lapsed):
        holder = _read_booking(cursor, booking_id, for_update=True)
        if holder is None or not holder.lapsed(now):  # confirmed or extended a moment ago: still the holder
            holders.update({seat: booking_id for seat in seat_ids if holder and seat in holder.seat_ids})
            continue
        _set_status(cursor, holder, BookingStatus.EXPIRED, HOLD_EXPIRED_REASON, w)
        w.expired.append(_read_booking(cursor, booking_id))
    return dict(sorted(holders.items()))


def _seat_list(seat_ids: Iterable[int]) -> str:
    return ",".join(str(seat) for seat in sorted(seat_ids))


@contextlib.contextmanager
def _guard_violation_as_seat_already_booked() -> Iterator[None]:
    try:
        yield
    except pymysql.err.IntegrityError as exc:
        if _is_seat_guard_violation(exc):
            raise SeatAlreadyBooked(str(exc.args[1])) from exc
        raise


@contextlib.contextmanager
def _integrity_errors_as_domain_errors(booking: Booking) -> Iterator[None]:
    try:
        yield
    except pymysql.err.IntegrityError as exc:
        if _is_seat_guard_violation(exc):
            raise SeatAlreadyBooked(str(exc.args[1])) from exc
        if exc.args[0] == ER_DUP_ENTRY and IDEMPOTENCY_KEY in str(exc.args[1]):
            raise IdempotencyKeyTaken("") from exc  # the repository looks the key's booking up
        if exc.args[0] == ER_DUP_ENTRY:
            raise BookingExists(booking.booking_id) from exc
        raise


# A booking row `b` that is not a hold past its deadline (the one parameter: now, as MySQL stores it).
NOT_LAPSED = "NOT (b.status IN ('PENDING', 'HELD') AND b.expires_at IS NOT NULL AND b.expires_at <= %s)"

BOOKING_COLUMNS = (
    "booking_id, performance_id, user_id, seat_list, status, strategy, reason, expires_at, extensions,"
    " payment_reference, wanted_section_id, wanted_count"
)


def _booking_of(row: tuple) -> Booking:
    return Booking(
        booking_id=row[0],
        performance_id=row[1],
        user_id=row[2],
        seat_ids=tuple(int(seat) for seat in row[3].split(",") if seat),
        status=BookingStatus(row[4]),
        strategy=row[5],
        reason=row[6],
        expires_at=_epoch(row[7]),
        extensions=row[8],
        payment_reference=row[9],
        wanted=(int(row[10]), int(row[11])) if row[10] is not None else None,
    )


def _read_booking(cursor: Cursor, booking_id: str, for_update: bool = False) -> Booking | None:
    cursor.execute(
        f"SELECT {BOOKING_COLUMNS} FROM bookings WHERE booking_id = %s"
        + (" FOR UPDATE" if for_update else ""),
        (booking_id,),
    )
    row = cursor.fetchone()
    return None if row is None else _booking_of(row)
