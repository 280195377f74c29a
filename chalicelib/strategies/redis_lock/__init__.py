"""`redis_lock`: a Redis lease per seat, then the MySQL write, synchronously (201). The whole story is
strategy.py (the leases, their watchdog, the write fenced by MySQL's unique guard)."""

from chalicelib.strategies.redis_lock.strategy import LeaseWatchdog, RedisLockStrategy

__all__ = ["LeaseWatchdog", "RedisLockStrategy"]
