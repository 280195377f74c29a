"""The five concurrency strategies, one package each holding its whole story (its request path, what
finishes it, its Lua): db_lock, redis_lock, redis_async, fifo_partition, stream_state. Each package's
docstring says where every part lives. Shared by several: seat_mirror.py (every strategy: Redis follows
MySQL's decision), async_common.py (the asynchronous ones: the journal entry, a failed send, give-up and
settling), partitioning.py (the two in-line ones: a booking's partition). Strategies depend on the ports
(services/ports.py), never on an adapter: bootstrap builds them with the real adapters, unit tests with
fakes."""
