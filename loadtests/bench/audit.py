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
        record_drift = 0
        accepted_ids = [booking_id for booking_id, _, _ in answers]
        pipe = self._redis.pipeline(transaction=False)
        for booking_id in accepted_ids:
            # The record's key (adapters/redis_seats.py): in the performance's slot.
            pipe.hget(f"{self._prefix}:{{p{performance_id}}}:booking:{booking_id}", "status")
        for booking_id, recorded in zip(accepted_ids, pipe.execute(), strict=True):
            final = rows.get(booking_id, (None, 0))[0]
            if recorded is not None and final is not None and recorded != final:
                record_drift += 1
        repaired = self._sql(
            "SELECT COUNT(*) FROM reconcile_log WHERE performance_id = %s AND action IN (%s, %s)",
            performance_id,
            *RECONCILE_REPAIR_ACTIONS,
        )[0][0]
        dry_run = None
        if reconciler is not None:
            summary = reconciler.run(performance_id, dry_run=True).to_dict()
            dry_run = {
                "repairs": sum(summary["repairs"].values()),
                "holds_in_flight": summary["holds_in_flight"],
                "not_loaded": summary["not_loaded"],
                "errors": summary["errors"],
            }
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
