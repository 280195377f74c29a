"""After a run: wait for the consumers to drain, then audit the performance through MySQL and Redis.

* drained: every booking the client saw accepted (201/202) has a row in MySQL with a final status and no seat
  of the performance is still held ("H:") in the Redis seat map — or the timeout passed
* double_bookings: seats of the performance with more than one PENDING/CONFIRMED booking in MySQL, plus seats
  the client was told were booked (201, or 202 then CONFIRMED) by more than one booking
* lost_bookings: accepted answers whose booking MySQL does not have, or has still PENDING, after the drain;
  and 201 answers whose booking is not CONFIRMED
* drift: seats whose Redis state is not what MySQL says ("B:<id>" for the CONFIRMED holder, "0" otherwise),
  accepted bookings whose Redis record disagrees with MySQL's status, seats the scheduled reconcile job had
  to repair meanwhile (reconcile_log), and what a dry run of the reconcile job (services/reconcile.py) would
  still repair
"""

from __future__ import annotations

import json
import time
from collections import Counter
from urllib.parse import urlsplit

import pymysql
import redis
from redis.cluster import RedisCluster

FINAL = ("CONFIRMED", "REJECTED", "FAILED", "CANCELLED")
RECONCILE_REPAIR_ACTIONS = ("reconcile_seat_booked", "reconcile_seat_released")


class Auditor:
    def __init__(self, database_url: str, redis_url: str, key_prefix: str, cluster: bool = False) -> None:
        parts = urlsplit(database_url)
        self._db = pymysql.connect(
            host=parts.hostname,
            port=parts.port or 3306,
            user=parts.username or "root",
            password=parts.password or "",
            database=parts.path.lstrip("/"),
            autocommit=True,
        )
        self._redis = (
            RedisCluster.from_url(redis_url, decode_responses=True)
            if cluster
            else redis.Redis.from_url(redis_url, decode_responses=True)
        )
        self._prefix = key_prefix

    def close(self) -> None:
        self._db.close()
        self._redis.close()

    def _sql(self, query: str, *args) -> list[tuple]:
        with self._db.cursor() as cursor:
            cursor.execute(query, args)
            return list(cursor.fetchall())

    def seats_key(self, performance_id: int) -> str:
        return f"{self._prefix}:{{p{performance_id}}}:seats"

    def bookings(self, performance_id: int) -> dict[str, tuple[str, float]]:
        """booking id -> (status, epoch seconds the row was last written: the final decision's time). Not
        created_at: the journal writes an asynchronous booking's row PENDING before its 202, so its creation
        time is the request's, and the consumers' pace (persist_rps, drain_rps) and the confirm latency
        would measure the HTTP load instead."""
        rows = self._sql(
            "SELECT booking_id, status, UNIX_TIMESTAMP(updated_at) FROM bookings WHERE performance_id = %s",
            performance_id,
        )
        return {booking_id: (status, float(written)) for booking_id, status, written in rows}

    def held_seats(self, performance_id: int) -> int:
        states = self._redis.hvals(self.seats_key(performance_id))
        return sum(1 for state in states if state.startswith("H:"))

    def wait_drained(self, performance_id: int, accepted: set[str], timeout: float, progress=None) -> dict:
        started = time.monotonic()
        while True:
            rows = self.bookings(performance_id)
            unfinished = sum(1 for b in accepted if rows.get(b, ("PENDING",))[0] not in FINAL)
            held = self.held_seats(performance_id)
            if progress:
                progress(unfinished, held)
            if (unfinished == 0 and held == 0) or time.monotonic() - started > timeout:
                return {
                    "drained": unfinished == 0 and held == 0,
                    "drain_seconds": round(time.monotonic() - started, 3),
                    "unfinished": unfinished,
                    "held_seats": held,
                }
            time.sleep(0.25 if unfinished < 100 else 0.5)

    def audit(
        self, performance_id: int, answers: list[tuple[str, int, list[int] | None]], reconciler=None
    ) -> dict:
        """answers: (booking id, HTTP status, seat ids) of every accepted request."""
        rows = self.bookings(performance_id)
        double_sql = self._sql(
            "SELECT bs.seat_id FROM booking_seats bs JOIN bookings b ON b.booking_id = bs.booking_id"
            " WHERE bs.performance_id = %s AND b.status IN ('PENDING', 'CONFIRMED')"
            " GROUP BY bs.seat_id HAVING COUNT(*) > 1",
            performance_id,
        )
        told_booked: Counter = Counter()
        lost = 0
        for booking_id, status, seat_ids in answers:
            final = rows.get(booking_id, (None, 0))[0]
            if final is None or final == "PENDING" or (status == 201 and final != "CONFIRMED"):
                lost += 1
            if (status == 201 or final == "CONFIRMED") and seat_ids:
                told_booked.update(seat_ids)
        double_client = [seat for seat, count in told_booked.items() if count > 1]

        holders = {
            seat: booking_id
            for seat, booking_id in self._sql(
                "SELECT bs.seat_id, b.booking_id FROM booking_seats bs"
                " JOIN bookings b ON b.booking_id = bs.booking_id"
                " WHERE bs.performance_id = %s AND bs.active = 1 AND b.status = 'CONFIRMED'",
                performance_id,
            )
        }
        states = self._redis.hgetall(self.seats_key(performance_id))
        seat_drift = 0
        if states:
            for seat, state in states.items():
                holder = holders.get(int(seat))
                expected = f"B:{holder}" if holder else "0"
                if state != expected:
                    seat_drift += 1
            seat_drift += sum(1 for seat in holders if str(seat) not in states)
        accepted_ids = [booking_id for booking_id, _, _ in answers]
        record_drift = self._record_drift(performance_id, accepted_ids, rows)
        repaired = self._repairs_logged(performance_id)
        dry_run = self._reconcile_dry_run(performance_id, reconciler)
        dry_run_drift = (
            (dry_run["repairs"] + dry_run["holds_in_flight"] + dry_run["errors"]) if dry_run else 0
        )
        statuses = Counter(status for status, _ in rows.values())
        # Bookings no answer told any client about: every booking of a bench performance comes from a
        # request of the generator, so one here means a request was carried out twice (two booking ids for
        # one user and one request; the client saw one of them).
        answered = {booking_id for booking_id, _, _ in answers}
        ghosts = sorted(booking_id for booking_id in rows if booking_id not in answered)
        return {
            "double_bookings": len(double_sql) + len(double_client),
            "lost_bookings": lost,
            "drift": seat_drift + record_drift + int(repaired) + dry_run_drift,
            "audit": {
                "double_bookings_mysql": len(double_sql),
                "double_bookings_client": len(double_client),
                "seat_map_drift": seat_drift,
                "seat_map_loaded": bool(states),
                "record_drift": record_drift,
                "reconcile_repairs_logged": int(repaired),
                "reconcile_dry_run": dry_run,
                "mysql_statuses": dict(statuses),
                "seats_sold": len(holders),
                "unanswered_bookings": len(ghosts),
                "unanswered_sample": ghosts[:5],
            },
            "rows": rows,
        }

    # --- queue (waiting rooms) ----------------------------------------------------------------------------
    def waiting_room_tickets(self, performance_id: int) -> list[dict]:
        """Every ticket of the performance's waiting room as Redis holds it (adapters/redis_waiting_room.py:
        the hash `{w<id>}:tickets`, ticket -> {"n": number, "u": user, "turn": ms, "col": ms once collected})
        -> [{"ticket", "number", "user", "turn_ms", "collected_ms"}], in number order. The server's own view
        of who was admitted when: a turn is fixed when its ticket is issued."""
        raw = self._redis.hgetall(f"{self._prefix}:{{w{performance_id}}}:tickets")
        tickets = []
        for ticket, text in raw.items():
            state = json.loads(text)
            tickets.append(
                {
                    "ticket": ticket,
                    "number": int(state["n"]),
                    "user": state["u"],
                    "turn_ms": int(state["turn"]),
                    "collected_ms": int(state["col"]) if state.get("col") not in (None, "") else None,
                }
            )
        return sorted(tickets, key=lambda t: t["number"])

    def bookings_by_user(self, performance_id: int) -> list[tuple[str, str, str, float]]:
        """(booking id, user id, status, epoch seconds of the row's creation) of every booking of the
        performance in MySQL, whoever asked for it."""
        return [
            (booking_id, user_id, status, float(created))
            for booking_id, user_id, status, created in self._sql(
                "SELECT booking_id, user_id, status, UNIX_TIMESTAMP(created_at) FROM bookings"
                " WHERE performance_id = %s",
                performance_id,
            )
        ]

    # --- shared by both audits ----------------------------------------------------------------------------
    def _record_drift(self, performance_id: int, booking_ids: list[str], rows: dict) -> int:
        """Accepted bookings whose Redis record (while it lives) says another status than MySQL."""
        drift = 0
        pipe = self._redis.pipeline(transaction=False)
        for booking_id in booking_ids:
            # The record's key (adapters/redis_seats.py): in the performance's slot.
            pipe.hget(f"{self._prefix}:{{p{performance_id}}}:booking:{booking_id}", "status")
        for booking_id, recorded in zip(booking_ids, pipe.execute(), strict=True):
            final = rows.get(booking_id, (None, 0))[0]
            if recorded is not None and final is not None and recorded != final:
                drift += 1
        return drift

    def _repairs_logged(self, performance_id: int) -> int:
        """Seats the scheduled reconcile job had to repair meanwhile (each one was drift)."""
        return int(
            self._sql(
                "SELECT COUNT(*) FROM reconcile_log WHERE performance_id = %s AND action IN (%s, %s)",
                performance_id,
                *RECONCILE_REPAIR_ACTIONS,
            )[0][0]
        )

    @staticmethod
    def _reconcile_dry_run(performance_id: int, reconciler) -> dict | None:
        """What the reconcile job (services/reconcile.py) would still repair: nothing, if Redis == MySQL."""
        if reconciler is None:
            return None
        summary = reconciler.run(performance_id, dry_run=True).to_dict()
        return {
            "repairs": sum(summary["repairs"].values()),
            "repairs_by_kind": {kind: n for kind, n in summary["repairs"].items() if n},
            "holds_in_flight": summary["holds_in_flight"],
            "not_loaded": summary["not_loaded"],
            "errors": summary["errors"],
        }

    # --- hold-and-abandon ---------------------------------------------------------------------------------
    def hold_progress(self, performance_id: int) -> tuple[int, int]:
        """(seats CONFIRMED, seats held by a hold whose time has not run out) in MySQL, now."""
        confirmed, held = self._sql(
            "SELECT COALESCE(SUM(b.status = 'CONFIRMED'), 0), COALESCE(SUM(b.status IN ('PENDING', 'HELD')"
            " AND (b.expires_at IS NULL OR b.expires_at > UTC_TIMESTAMP(6))), 0)"
            " FROM booking_seats bs JOIN bookings b ON b.booking_id = bs.booking_id"
            " WHERE bs.performance_id = %s AND bs.active = 1",
            performance_id,
        )[0]
        return int(confirmed), int(held)

    def hold_seat_drift(self, performance_id: int) -> tuple[int, int]:
        """(seats whose Redis state is not what MySQL says, seats a lapsed hold still shows held). MySQL's
        active holder of a seat: "B:<id>" if CONFIRMED, "H:<id>" if a hold (or a redis_async booking on its
        way) whose time has not run out, else "0". A lapsed hold may show "H:<id>" until the sweeper (every
        60 s) gives its seats back: counted apart, drift only if it outlasts the wait for it."""
        holders = {
            seat: (booking_id, status, lapsed)
            for seat, booking_id, status, lapsed in self._sql(
                "SELECT bs.seat_id, b.booking_id, b.status,"
                " b.expires_at IS NOT NULL AND b.expires_at <= UTC_TIMESTAMP(6)"
                " FROM booking_seats bs JOIN bookings b ON b.booking_id = bs.booking_id"
                " WHERE bs.performance_id = %s AND bs.active = 1",
                performance_id,
            )
        }
        states = self._redis.hgetall(self.seats_key(performance_id))
        drift = lapsed_shown = 0
        for seat, state in states.items():
            booking_id, status, lapsed = holders.get(int(seat), (None, None, 0))
            if status == "CONFIRMED":
                expected = f"B:{booking_id}"
            elif status in ("PENDING", "HELD") and not lapsed:
                expected = f"H:{booking_id}"
            elif status in ("PENDING", "HELD") and state == f"H:{booking_id}":
                lapsed_shown += 1
                continue
            else:
                expected = "0"
            if state != expected:
                drift += 1
        drift += sum(1 for seat in holders if str(seat) not in states)
        if not states:
            drift += len(holders) or 1  # the map was never loaded: nothing to compare is drift too
        return drift, lapsed_shown

    def unsettled_bookings(self, performance_id: int) -> int:
        """Bookings still PENDING and not lapsed (in line, or on their way to MySQL)."""
        return int(
            self._sql(
                "SELECT COUNT(*) FROM bookings WHERE performance_id = %s AND status = 'PENDING'"
                " AND (expires_at IS NULL OR expires_at > UTC_TIMESTAMP(6))",
                performance_id,
            )[0][0]
        )

    def wait_holds_settled(self, performance_id: int, timeout: float) -> dict:
        """After the users stopped: every booking decided (or lapsed) and the seat map what MySQL says,
        a lapsed hold's "H:" included (the sweeper runs every 60 s), or the timeout passed."""
        started = time.monotonic()
        while True:
            unsettled = self.unsettled_bookings(performance_id)
            drift, lapsed_shown = self.hold_seat_drift(performance_id)
            settled = unsettled == 0 and drift == 0 and lapsed_shown == 0
            if settled or time.monotonic() - started > timeout:
                return {
                    "drained": settled,
                    "drain_seconds": round(time.monotonic() - started, 3),
                    "unfinished": unsettled,
                    "held_seats": lapsed_shown,
                }
            time.sleep(0.5)

    def audit_holds(
        self,
        performance_id: int,
        seats: int,
        max_per_user: int,
        accepted: list[str],
        told_confirmed: list[tuple[str, list[int]]],
        reconciler=None,
    ) -> dict:
        """hold-and-abandon's audit. accepted: every booking id a 201/202 named; told_confirmed: (booking id,
        seat ids) of every confirm answered 200 CONFIRMED.

        * sold exactly once: every seat of the performance in exactly one CONFIRMED booking, its row active;
          no seat active twice (the unique guard's job), none in two CONFIRMED bookings, none told confirmed
          to two clients
        * the limit: no user's CONFIRMED seats of the performance over MAX_SEATS_PER_USER
        * lost: an accepted booking MySQL does not have, one still PENDING and not lapsed, one a client was
          told CONFIRMED that MySQL does not have CONFIRMED
        * drift: Redis seat map and booking records against MySQL, reconcile repairs logged, the reconcile
          job's dry run
        * expired: holds whose time ran out (EXPIRED, or PENDING/HELD past expires_at); re-sold: their seats
          that ended in a CONFIRMED booking"""
        rows = self.bookings(performance_id)
        sold = self._sql(
            "SELECT bs.seat_id, COUNT(*), SUM(bs.active = 1) FROM booking_seats bs"
            " JOIN bookings b ON b.booking_id = bs.booking_id"
            " WHERE bs.performance_id = %s AND b.status = 'CONFIRMED' GROUP BY bs.seat_id",
            performance_id,
        )
        sold_once = sum(1 for _, count, active in sold if count == 1 and active == 1)
        confirmed_twice = sum(1 for _, count, _ in sold if count > 1)
        confirmed_inactive = sum(1 for _, count, active in sold if (active or 0) < count)
        active_twice = len(
            self._sql(
                "SELECT seat_id FROM booking_seats WHERE performance_id = %s AND active = 1"
                " GROUP BY seat_id HAVING COUNT(*) > 1",
                performance_id,
            )
        )
        told: Counter = Counter(seat for _, seat_ids in told_confirmed for seat in seat_ids)
        told_twice = sum(1 for count in told.values() if count > 1)
        over_limit = self._sql(
            "SELECT b.user_id, COUNT(*) FROM booking_seats bs"
            " JOIN bookings b ON b.booking_id = bs.booking_id WHERE bs.performance_id = %s"
            " AND b.status = 'CONFIRMED' GROUP BY b.user_id HAVING COUNT(*) > %s",
            performance_id,
            max_per_user,
        )
        most = self._sql(
            "SELECT COALESCE(MAX(n), 0) FROM (SELECT COUNT(*) AS n FROM booking_seats bs"
            " JOIN bookings b ON b.booking_id = bs.booking_id WHERE bs.performance_id = %s"
            " AND b.status = 'CONFIRMED' GROUP BY b.user_id) per_user",
            performance_id,
        )[0][0]
        lapsed = {
            booking_id
            for (booking_id,) in self._sql(
                "SELECT booking_id FROM bookings WHERE performance_id = %s AND (status = 'EXPIRED'"
                " OR (status IN ('PENDING', 'HELD') AND expires_at <= UTC_TIMESTAMP(6)))",
                performance_id,
            )
        }
        resold = self._sql(
            "SELECT COUNT(DISTINCT was.seat_id), COUNT(DISTINCT was.booking_id) FROM booking_seats was"
            " JOIN bookings gone ON gone.booking_id = was.booking_id"
            " JOIN booking_seats cur ON cur.seat_id = was.seat_id AND cur.active = 1"
            " JOIN bookings sold ON sold.booking_id = cur.booking_id AND sold.status = 'CONFIRMED'"
            " WHERE was.performance_id = %s AND sold.booking_id <> gone.booking_id"
            " AND (gone.status = 'EXPIRED'"
            " OR (gone.status IN ('PENDING', 'HELD') AND gone.expires_at <= UTC_TIMESTAMP(6)))",
            performance_id,
        )[0]
        expired_with_seats = self._sql(
            "SELECT COUNT(DISTINCT b.booking_id) FROM bookings b JOIN booking_seats bs"
            " ON bs.booking_id = b.booking_id WHERE b.performance_id = %s AND (b.status = 'EXPIRED'"
            " OR (b.status IN ('PENDING', 'HELD') AND b.expires_at <= UTC_TIMESTAMP(6)))",
            performance_id,
        )[0][0]
        # stream_state: a decision of the ledger that MySQL's unique guard refused (the ledger gave a seat
        # MySQL says is taken; persister.py names the real holder back to the ledger)
        guard_refusals = self._sql(
            "SELECT COUNT(*) FROM bookings WHERE performance_id = %s AND status = 'REJECTED'"
            " AND reason LIKE 'a seat was already sold (database guard)%%'",
            performance_id,
        )[0][0]
        last_confirmed = self._sql(
            "SELECT UNIX_TIMESTAMP(MAX(updated_at)) FROM bookings WHERE performance_id = %s"
            " AND status = 'CONFIRMED'",
            performance_id,
        )[0][0]

        lost = 0
        for booking_id in accepted:
            status = rows.get(booking_id, (None, 0))[0]
            if status is None or (status == "PENDING" and booking_id not in lapsed):
                lost += 1
        told_not_confirmed = sum(
            1 for booking_id, _ in told_confirmed if rows.get(booking_id, (None, 0))[0] != "CONFIRMED"
        )
        lost += told_not_confirmed
        answered = set(accepted)
        ghosts = sorted(booking_id for booking_id in rows if booking_id not in answered)

        seat_drift, lapsed_shown = self.hold_seat_drift(performance_id)
        record_drift = self._record_drift(performance_id, accepted, rows)
        repaired = self._repairs_logged(performance_id)
        dry_run = self._reconcile_dry_run(performance_id, reconciler)
        dry_run_drift = (dry_run["repairs"] + dry_run["errors"]) if dry_run else 0
        statuses = Counter(status for status, _ in rows.values())
        double = confirmed_twice + active_twice + told_twice
        logged = self._sql(
            "SELECT action, booking_id, detail FROM reconcile_log WHERE performance_id = %s"
            " ORDER BY id LIMIT 5",
            performance_id,
        )
        return {
            "sold_out": sold_once == seats and double == 0 and confirmed_inactive == 0,
            "seats": seats,
            "seats_sold": sold_once,
            "double_bookings": double,
            "lost_bookings": lost,
            "drift": seat_drift + lapsed_shown + record_drift + repaired + dry_run_drift,
            "over_limit_users": len(over_limit),
            "most_seats_per_user": int(most),
            "holds_expired": len(lapsed),
            "holds_expired_with_seats": int(expired_with_seats),
            "seats_resold": int(resold[0]),
            "holds_resold": int(resold[1]),
            "guard_refusals": int(guard_refusals),
            "last_confirmed_at": float(last_confirmed) if last_confirmed is not None else None,
            "audit": {
                "seats_confirmed_twice": confirmed_twice,
                "seats_confirmed_inactive": confirmed_inactive,
                "seats_active_twice": active_twice,
                "seats_told_confirmed_twice": told_twice,
                "told_confirmed_not_confirmed": told_not_confirmed,
                "over_limit_sample": [[user, int(n)] for user, n in over_limit[:5]],
                "seat_map_drift": seat_drift,
                "lapsed_holds_shown_held": lapsed_shown,
                "record_drift": record_drift,
                "reconcile_repairs_logged": repaired,
                "reconcile_dry_run": dry_run,
                # what the app itself logged for the reconcile job to look at (a ledger release it could
                # not send, a repair), the first few
                "reconcile_log_sample": [list(row) for row in logged],
                "mysql_statuses": dict(statuses),
                "unanswered_bookings": len(ghosts),
                "unanswered_sample": ghosts[:5],
            },
        }
