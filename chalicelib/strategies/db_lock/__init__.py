"""`db_lock`: MySQL row locks decide, synchronously (201). The whole story is strategy.py; the seat map is
kept in line by strategies/seat_mirror.py, and the locking write is BookingStore.insert_with_seat_row_locks
(adapters/mysql.py)."""

from chalicelib.strategies.db_lock.strategy import DbLockStrategy

__all__ = ["DbLockStrategy"]
