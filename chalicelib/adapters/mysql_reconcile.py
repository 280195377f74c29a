"""MySQL as the reconcile job reads it (services/reconcile.py): the booking repository, plus the lookups
that pick what to check and what is still to do."""

from __future__ import annotations

from collections.abc import Iterable

from chalicelib.adapters.mysql import BookingRepository
from chalicelib.domain.models import BookingStatus

IN_CHUNK = 1_000


class ReconcileRepository(BookingRepository):
    def statuses(self, booking_ids: Iterable[str]) -> dict[str, BookingStatus]:
        wanted = list(booking_ids)
        found: dict[str, BookingStatus] = {}
        with self._db.transaction() as cursor:
            for start in range(0, len(wanted), IN_CHUNK):
                chunk = wanted[start : start + IN_CHUNK]
                placeholders = ", ".join(["%s"] * len(chunk))
                cursor.execute(
                    f"SELECT booking_id, status FROM bookings WHERE booking_id IN ({placeholders})", chunk
                )
                found.update((row[0], BookingStatus(row[1])) for row in cursor.fetchall())
        return found

    def recently_active_performances(self, within_seconds: int) -> list[int]:
        # updated_at is set by MySQL on insert and on every update (ix_booking_updated, migration 0002).
        with self._db.transaction() as cursor:
            cursor.execute(
                "SELECT DISTINCT performance_id FROM bookings"
                " WHERE updated_at >= NOW(3) - INTERVAL %s SECOND",
                (within_seconds,),
            )
            return sorted(row[0] for row in cursor.fetchall())

    def open_reconcile_entries(
        self, action: str, closed_by: str, performance_id: int | None = None
    ) -> list[str]:
        # The answering row is found by its dedup key, `<closed_by>:<booking id>` (ReconcileEntry.dedup_key).
        query = (
            "SELECT DISTINCT p.booking_id FROM reconcile_log p"
            " WHERE p.action = %s AND p.booking_id IS NOT NULL"
            " AND NOT EXISTS (SELECT 1 FROM reconcile_log d"
            " WHERE d.dedup_key = CONCAT(%s, ':', p.booking_id))"
        )
        args: list[object] = [action, closed_by]
        if performance_id is not None:
            query += " AND p.performance_id = %s"
            args.append(performance_id)
        with self._db.transaction() as cursor:
            cursor.execute(query + " ORDER BY p.booking_id", args)
            return [row[0] for row in cursor.fetchall()]
