"""The application's object graph with no server: the real services, strategies, consumer, persister and
reconcile job, wired as chalicelib/bootstrap.py wires them, on the fakes of tests/support/fakes.py (MySQL,
queues, streams) and the real Redis adapters on fakeredis (the project's Lua run by lupa, unchanged).

What this cannot show: races between processes and MySQL's locking (the fake runs one call at a time). The
concurrency claims keep their real-server races and audits (tests/integration, tests/faults).
"""

from __future__ import annotations

import dataclasses
import time

import fakeredis

from chalicelib.adapters.bloom import RedisBloomFilter
from chalicelib.adapters.circuit import CircuitBreaker
from chalicelib.adapters.fill_lock import RedisFillLock
from chalicelib.adapters.idempotency import PowertoolsIdempotency
from chalicelib.adapters.redis_audit import RedisSeatMapAudit
from chalicelib.adapters.redis_client import GuardedRedis, is_outage
from chalicelib.adapters.redis_seats import RedisSeatStore
from chalicelib.domain.models import STRATEGY_NAMES, Performance
from chalicelib.services.booking import BookingService
from chalicelib.services.booking_events import BookingEventConsumer
from chalicelib.services.catalogue import CatalogueService
from chalicelib.services.recently_taken import RecentlyTaken
from chalicelib.services.reconcile import Reconciler
from chalicelib.services.seat_state import SeatStateService
from chalicelib.strategies.db_lock import DbLockStrategy
from chalicelib.strategies.fifo_partition import FifoPartitionStrategy
from chalicelib.strategies.partitioning import section_partition
from chalicelib.strategies.redis_async import TAKE_SCRIPT, RedisAsyncStrategy
from chalicelib.strategies.redis_lock import RedisLockStrategy
from chalicelib.strategies.stream_state import DecisionPersister, SeatLedger, StreamStateStrategy
from tests.support.factories import event_body
from tests.support.fakes import (
    DictKeyValueStore,
    InMemoryBookings,
    InMemoryCatalogue,
    RecordingQueue,
    RecordingStream,
)
from tests.support.metrics import RecordingMetrics

PREFIX = "t"
MAX_RECEIVE_COUNT = 3
HOLD_DEADLINE_SECONDS = 900
QUEUE_RETRY_WINDOW_SECONDS = 120


class Clock:
    """Wall-clock time (epoch seconds, what ULIDs and MySQL's created_at use), moved ahead by hand."""

    def __init__(self) -> None:
        self.skew = 0.0

    def __call__(self) -> float:
        return time.time() + self.skew

    def advance(self, seconds: float) -> None:
        self.skew += seconds


@dataclasses.dataclass
class Offline:
    clock: Clock
    redis_server: fakeredis.FakeServer
    redis: GuardedRedis
    seat_store: RedisSeatStore
    bookings: InMemoryBookings
    catalogue_store: InMemoryCatalogue
    catalogue: CatalogueService
    seat_state: SeatStateService
    idempotency: PowertoolsIdempotency
    booking_queue: RecordingQueue
    fifo_queue: RecordingQueue
    request_stream: RecordingStream
    changelog: RecordingStream
    ledger: SeatLedger
    strategies: dict
    booking_service: BookingService
    # Off (0 s) as in the test environment; a test turns it on by setting its ttl_seconds.
    recently_taken: RecentlyTaken
    consumer: BookingEventConsumer
    persister: DecisionPersister
    reconciler: Reconciler
    metrics: RecordingMetrics  # what the services counted (chalicelib/services/metrics.py)

    def redis_down(self) -> None:
        """Every Redis call fails as a lost connection does (RedisUnavailable, through the real client)."""
        self.redis_server.connected = False

    def redis_up(self) -> None:
        self.redis_server.connected = True

    def new_performance(self, strategy: str = "redis_async", **shape: int) -> Performance:
        """A performance created through the catalogue service (its seats published to the seat map)."""
        event = self.catalogue.create_event(event_body(strategy, **shape))
        return self.catalogue.performance(event["performances"][0]["performance_id"])

    def seat_states(self, performance: Performance) -> dict[int, str]:
        return self.seat_store.seat_states(performance.performance_id) or {}

    def deliver(self, queue: RecordingQueue, receive_count: int = 1, index: int = -1):
        """Hand the consumer one published message, as the SQS batch handler would."""
        return self.consumer.handle(queue.bodies()[index], receive_count, f"message-{index}")


def offline() -> Offline:
    clock = Clock()
    server = fakeredis.FakeServer()
    # The production client class (errors as RedisUnavailable), on fakeredis' connections; its breaker
    # never opens here, so a test's outage ends the moment it says so.
    breaker = CircuitBreaker("redis", failure_threshold=10**9, reset_seconds=0.0, is_failure=is_outage)
    pool = fakeredis.FakeRedis(server=server, decode_responses=True).connection_pool
    client = GuardedRedis(breaker, connection_pool=pool)
    # One clock for every judge of a hold's deadline, as bootstrap.build wires it.
    seat_store = RedisSeatStore(client, 3_600, PREFIX, take_script=TAKE_SCRIPT, clock=clock)
    bookings = InMemoryBookings(clock)
    catalogue_store = InMemoryCatalogue()
    fill_lock = RedisFillLock(client, PREFIX)
    seat_state = SeatStateService(seat_store, bookings, fill_lock, clock=clock)
    idempotency = PowertoolsIdempotency(client, 3_600, f"{PREFIX}:idem")
    booking_queue, fifo_queue = RecordingQueue(), RecordingQueue()
    request_stream, changelog = RecordingStream(), RecordingStream()

    def partition_of(performance_id: int, seat_ids: tuple[int, ...]) -> str:
        return section_partition(catalogue_store.get_performance(performance_id), performance_id, seat_ids)

    store = DictKeyValueStore()
    ledger = SeatLedger(lambda: store, changelog, clock)
    redis_async = RedisAsyncStrategy(seat_store, seat_state, bookings, booking_queue)
    fifo_partition = FifoPartitionStrategy(seat_store, seat_state, bookings, fifo_queue)
    stream_state = StreamStateStrategy(seat_store, seat_state, bookings, request_stream, partition_of)
    strategies = {
        strategy.name: strategy
        for strategy in (
            DbLockStrategy(bookings, seat_store),
            RedisLockStrategy(client, bookings, seat_store, PREFIX, lease_seconds=5.0),
            redis_async,
            fifo_partition,
            stream_state,
        )
    }
    assert set(strategies) == set(STRATEGY_NAMES)
    catalogue = CatalogueService(
        catalogue_store,
        "redis_async",
        idempotency,
        available_strategies=frozenset(strategies),
        known_ids=RedisBloomFilter(client, PREFIX, 10_000, 0.01),
        fill_lock=fill_lock,
        on_performance_created=seat_state.publish,
    )
    finishers = {redis_async.name: redis_async, fifo_partition.name: fifo_partition}
    persister = DecisionPersister(
        seat_store, bookings, request_stream, partition_of, bookings.active_seat_holders
    )
    reconciler = Reconciler(
        bookings,
        catalogue_store,
        RedisSeatMapAudit(client, seat_store, PREFIX),
        seat_store,
        compensators={**finishers, persister.name: persister},
        ledger=stream_state,
        hold_deadline_seconds=HOLD_DEADLINE_SECONDS,
        queue_retry_window_seconds=QUEUE_RETRY_WINDOW_SECONDS,
        activity_window_seconds=3_600,
        clock=clock,
    )
    seat_store.realign = lambda performance_id: reconciler.run(performance_id)
    metrics = RecordingMetrics()
    recently_taken = RecentlyTaken(0, clock=clock)
    booking_service = BookingService(
        catalogue,
        strategies,
        bookings,
        seat_store,
        idempotency,
        max_seats_per_booking=10,
        metrics=metrics,
        recently_taken=recently_taken,
        clock=clock,
    )
    bookings.on_expired = booking_service.expired  # as bootstrap.build wires it
    return Offline(
        clock=clock,
        redis_server=server,
        redis=client,
        seat_store=seat_store,
        bookings=bookings,
        catalogue_store=catalogue_store,
        catalogue=catalogue,
        seat_state=seat_state,
        idempotency=idempotency,
        booking_queue=booking_queue,
        fifo_queue=fifo_queue,
        request_stream=request_stream,
        changelog=changelog,
        ledger=ledger,
        strategies=strategies,
        booking_service=booking_service,
        recently_taken=recently_taken,
        consumer=BookingEventConsumer(finishers, bookings, MAX_RECEIVE_COUNT, metrics),
        persister=persister,
        reconciler=reconciler,
        metrics=metrics,
    )
