"""Builds clients, repositories, strategies and services once per process (one Lambda cold start)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import redis

from chalicelib.adapters import aws
from chalicelib.adapters.bloom import RedisBloomFilter
from chalicelib.adapters.fill_lock import RedisFillLock
from chalicelib.adapters.idempotency import PowertoolsIdempotency
from chalicelib.adapters.kinesis import KinesisStream
from chalicelib.adapters.mysql import BookingRepository, CatalogueRepository, Database
from chalicelib.adapters.mysql_reconcile import ReconcileRepository
from chalicelib.adapters.observability import metrics
from chalicelib.adapters.rate_limits import RedisTokenBuckets
from chalicelib.adapters.redis_audit import RedisSeatMapAudit
from chalicelib.adapters.redis_client import GuardedRedis, build_redis
from chalicelib.adapters.redis_policy import require_noeviction
from chalicelib.adapters.redis_seats import RedisSeatStore
from chalicelib.adapters.redis_waiting_room import RedisWaitingRooms
from chalicelib.adapters.rocks_state import RocksKeyValueStore
from chalicelib.adapters.sqs import SqsQueue
from chalicelib.adapters.tokens import Tokens
from chalicelib.config import Settings
from chalicelib.entrypoints.kinesis_batch import LedgerBatchHandler, PersisterBatchHandler
from chalicelib.entrypoints.sqs_batch import BookingBatchHandler
from chalicelib.services.booking import BookingService, HoldPolicy
from chalicelib.services.booking_events import BookingEventConsumer
from chalicelib.services.catalogue import CatalogueService
from chalicelib.services.rate_limits import BookingWriteLimits, Rate
from chalicelib.services.recently_taken import RecentlyTaken
from chalicelib.services.reconcile import Reconciler
from chalicelib.services.seat_state import SeatStateService
from chalicelib.services.waiting_room import WaitingRooms
from chalicelib.strategies.db_lock import DbLockStrategy
from chalicelib.strategies.fifo_partition import FifoPartitionStrategy
from chalicelib.strategies.partitioning import section_partition
from chalicelib.strategies.redis_async import TAKE_SCRIPT, RedisAsyncStrategy
from chalicelib.strategies.redis_lock import RedisLockStrategy
from chalicelib.strategies.stream_state import DecisionPersister, SeatLedger, StreamStateStrategy

log = logging.getLogger(__name__)
# A waiting room's queue is kept this long after its last join (then a join starts a new queue).
WAITING_ROOM_LIFETIME_SECONDS = 2 * 24 * 3600


@dataclass
class Container:
    settings: Settings
    db: Database
    redis: redis.Redis
    seat_store: RedisSeatStore
    bookings: BookingRepository
    catalogue: CatalogueService
    seat_state: SeatStateService
    booking_queue: SqsQueue
    fifo_queue: SqsQueue
    idempotency: PowertoolsIdempotency
    booking_service: BookingService
    recently_taken: RecentlyTaken
    booking_batch_handler: BookingBatchHandler
    fifo_batch_handler: BookingBatchHandler
    request_stream: KinesisStream
    ledger: SeatLedger
    ledger_batch_handler: LedgerBatchHandler
    persister_batch_handler: PersisterBatchHandler
    strategies: dict
    reconciler: Reconciler
    tokens: Tokens
    waiting_rooms: WaitingRooms
    booking_limits: BookingWriteLimits

    def health_checks(self) -> dict:
        return {
            "db": self.db.ping,
            "redis": self.seat_store.ping,
            # The contract names three checks; "queue" covers every queue and stream the strategies use.
            "queue": lambda: (
                self.booking_queue.ping() and self.fifo_queue.ping() and self.request_stream.ping()
            ),
        }


def build(settings: Settings, clock: Callable[[], float] = time.time) -> Container:
    """Every part wired; `clock` (epoch seconds) is the one "now" of every judge of a hold's deadline
    (MySQL's writes, the Redis scripts, stream_state's ledger, the service): tests inject one."""
    db = Database(
        settings.database_url,
        settings.db_pool_size,
        settings.db_connect_timeout_seconds,
        query_timeout=settings.db_query_timeout_seconds,
        breaker_failures=settings.db_breaker_failures,
        breaker_reset_seconds=settings.db_breaker_reset_seconds,
    )
    redis_client = build_redis(settings)
    _check_redis_policy(redis_client)
    seat_store = RedisSeatStore(
        redis_client,
        settings.pending_record_ttl_seconds,
        settings.redis_key_prefix,
        take_script=TAKE_SCRIPT,
        clock=clock,
    )
    # A Redis that comes back may be another one (a failover, a replaced node): trusted again only if it
    # cannot evict. Its seat maps need no drop: every answered hold is journaled in MySQL, so a map that
    # missed changes is realigned in place (seat_store.realign, below) and a missing one is rebuilt.
    redis_client.breaker.on_recovered = lambda: require_noeviction(redis_client.unguarded())
    bookings = BookingRepository(db, clock, settings.max_seats_per_user)
    fill_lock = RedisFillLock(redis_client, settings.redis_key_prefix)
    seat_state = SeatStateService(
        seat_store,
        bookings,
        fill_lock,
        fill_lock_seconds=settings.seat_fill_lock_seconds,
        fill_wait_seconds=settings.seat_fill_wait_seconds,
        map_cache_seconds=settings.seat_map_cache_seconds,
        render_seconds=settings.seat_map_render_seconds,
    )
    idempotency = PowertoolsIdempotency(
        redis_client, settings.idempotency_ttl_seconds, f"{settings.redis_key_prefix}:idem"
    )
    sqs = aws.client("sqs", settings)
    booking_queue = SqsQueue(sqs, settings.booking_queue_name)
    fifo_queue = SqsQueue(sqs, settings.fifo_queue_name)
    kinesis = aws.client("kinesis", settings)
    # A record's deadline is what one AWS call may take: past it the request answers 503, as a put did.
    streams = {
        "linger_seconds": settings.stream_linger_ms / 1000,
        "deadline_seconds": settings.aws_read_timeout_seconds,
    }
    request_stream = KinesisStream(kinesis, settings.request_stream_name, **streams)
    changelog = KinesisStream(kinesis, settings.changelog_stream_name, **streams)
    catalogue_store = CatalogueRepository(db)

    def partition_of(performance_id: int, seat_ids: tuple[int, ...]) -> str:
        return section_partition(catalogue_store.get_performance(performance_id), performance_id, seat_ids)

    # Opened on first use only: HTTP handlers never touch the ledger, and RocksDB has one opener per dir.
    ledger = SeatLedger(lambda: RocksKeyValueStore(settings.ledger_dir), changelog, clock)
    redis_async = RedisAsyncStrategy(seat_store, seat_state, bookings, booking_queue)
    fifo_partition = FifoPartitionStrategy(seat_store, seat_state, bookings, fifo_queue)
    strategies = {
        strategy.name: strategy
        for strategy in (
            DbLockStrategy(bookings, seat_store),
            RedisLockStrategy(
                redis_client, bookings, seat_store, settings.redis_key_prefix, settings.seat_lease_seconds
            ),
            redis_async,
            fifo_partition,
            StreamStateStrategy(seat_store, seat_state, bookings, request_stream, partition_of),
        )
    }
    catalogue = CatalogueService(
        catalogue_store,
        settings.default_strategy,
        idempotency,
        available_strategies=frozenset(strategies),
        known_ids=RedisBloomFilter(
            redis_client,
            settings.redis_key_prefix,
            settings.bloom_expected_ids,
            settings.bloom_false_positive_rate,
        ),
        fill_lock=fill_lock,
        on_performance_created=seat_state.publish,
    )
    recently_taken = RecentlyTaken(settings.recently_taken_seconds)
    tokens = Tokens(
        settings.token_signing_key,
        clock,
        user_token_seconds=settings.user_token_seconds,
        admission_token_seconds=settings.admission_token_seconds,
    )
    booking_service = BookingService(
        catalogue,
        strategies,
        bookings,
        seat_store,
        idempotency,
        settings.max_seats_per_booking,
        metrics,
        redis_down_fallback=strategies.get(settings.redis_down_fallback),
        recently_taken=recently_taken,
        holds=HoldPolicy(settings.hold_seconds, settings.hold_max_extensions),
        clock=clock,
        admissions=tokens,
    )
    # A write that took over a lapsed hold's seats expired it in MySQL: its other seats go back too.
    bookings.on_expired = booking_service.expired
    finishers = {redis_async.name: redis_async, fifo_partition.name: fifo_partition}
    consumer = BookingEventConsumer(finishers, bookings, settings.max_receive_count, metrics)
    persister = DecisionPersister(
        seat_store, bookings, request_stream, partition_of, bookings.active_seat_holders
    )
    reconciler = Reconciler(
        ReconcileRepository(db),
        catalogue_store,
        RedisSeatMapAudit(redis_client, seat_store, settings.redis_key_prefix),
        seat_store,
        # A booking nobody will finish is given up on as its own consumer gives up on a message.
        compensators={**finishers, persister.name: persister},
        ledger=strategies[StreamStateStrategy.name],
        hold_deadline_seconds=settings.pending_hold_deadline_seconds,
        queue_retry_window_seconds=settings.queue_retry_window_seconds(),
        activity_window_seconds=settings.reconcile_activity_window_seconds,
    )
    seat_store.realign = lambda performance_id: reconciler.run(performance_id)
    return Container(
        settings=settings,
        db=db,
        redis=redis_client,
        seat_store=seat_store,
        bookings=bookings,
        catalogue=catalogue,
        seat_state=seat_state,
        booking_queue=booking_queue,
        fifo_queue=fifo_queue,
        idempotency=idempotency,
        booking_service=booking_service,
        recently_taken=recently_taken,
        booking_batch_handler=BookingBatchHandler(consumer, booking_queue, settings),
        fifo_batch_handler=BookingBatchHandler(consumer, fifo_queue, settings),
        request_stream=request_stream,
        ledger=ledger,
        ledger_batch_handler=LedgerBatchHandler(ledger, changelog),
        persister_batch_handler=PersisterBatchHandler(persister, metrics),
        strategies=strategies,
        reconciler=reconciler,
        tokens=tokens,
        waiting_rooms=WaitingRooms(
            RedisWaitingRooms(redis_client, settings.redis_key_prefix),
            tokens,
            clock,
            collect_seconds=settings.waiting_room_collect_seconds,
            lifetime_seconds=WAITING_ROOM_LIFETIME_SECONDS,
            admission_seconds=settings.admission_token_seconds,
        ),
        booking_limits=BookingWriteLimits(
            RedisTokenBuckets(
                redis_client, settings.redis_key_prefix, clock, one_call=not settings.redis_cluster
            ),
            per_user=Rate(settings.user_rate_limit, settings.user_rate_window_seconds),
            per_address=Rate(settings.address_rate_limit, settings.address_rate_window_seconds),
        ),
    )


def _check_redis_policy(client: GuardedRedis) -> None:
    """Refuse to start on a Redis that may evict (redis_policy.py); if Redis is not reachable yet, the check
    runs when its circuit first recovers."""
    try:
        require_noeviction(client.unguarded())
    except redis.ConnectionError as exc:
        log.warning("Redis not reachable at start (%s): its eviction policy is checked when it answers", exc)
        client.breaker.trip()


_container: Container | None = None
_lock = threading.Lock()


def container() -> Container:
    """The process-wide container, built on first use (not at import: `chalice package` imports app.py)."""
    global _container
    if _container is None:
        with _lock:
            if _container is None:
                from chalicelib.config import settings

                _container = build(settings)
    return _container
