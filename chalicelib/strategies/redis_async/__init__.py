"""`redis_async` (the default): take the seats in Redis with one Lua script, journal the hold in MySQL,
answer 202, confirm later.

Where each part lives: strategy.py (the request path, and `finish`, what the consumer calls per message);
reserve_seats.lua (the take: every seat or none, in one atomic step; adapters/redis_seats.py runs it, as
bootstrap hands it TAKE_SCRIPT). What every asynchronous strategy shares stays shared: giving up and settling
(strategies/async_common.py), the consumer's retry and give-up policy (services/booking_events.py), the SQS
batch handler (entrypoints/sqs_batch.py).
"""

from pathlib import Path

from chalicelib.strategies.redis_async.strategy import RedisAsyncStrategy

TAKE_SCRIPT = Path(__file__).resolve().parent / "reserve_seats.lua"

__all__ = ["TAKE_SCRIPT", "RedisAsyncStrategy"]
