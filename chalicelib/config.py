"""One Settings object built from the environment; nothing else in the code reads os.environ.

Chalice copies a stage's `environment_variables` from `.chalice/config.json` into the Lambda (and into
`chalice local`); the local runtime does the same, so every stage differs only in these values.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from chalicelib.domain.models import STRATEGY_NAMES

# The stage a developer's machine runs (the default: no STAGE set).
LOCAL_STAGE = "local"
# The admin token of the local stage only. It is public (it is in the README), so no other stage may fall
# back to it: there an unset ADMIN_TOKEN leaves the admin API locked (app.py answers 401 to everyone).
LOCAL_ADMIN_TOKEN = "local-admin-token"


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    return default if raw in (None, "") else int(raw)


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    return default if raw in (None, "") else float(raw)


def _admin_token(env: Mapping[str, str], stage: str) -> str:
    """ADMIN_TOKEN when set; else the public local token on the local stage only, and "" (admin API locked)
    on any other, so a deployment that forgot its secret refuses admin calls instead of accepting a
    token anyone can read."""
    token = env.get("ADMIN_TOKEN") or ""
    return token or (LOCAL_ADMIN_TOKEN if stage == LOCAL_STAGE else "")


def _fallback(value: str) -> str:
    if value not in ("", "db_lock"):
        raise ValueError(f"REDIS_DOWN_FALLBACK must be empty or 'db_lock', not {value!r}")
    return value


@dataclass(frozen=True)
class Settings:
    stage: str = LOCAL_STAGE
    database_url: str = "mysql://root@127.0.0.1:3306/booking"
    redis_url: str = "redis://127.0.0.1:6379/0"
    # Every Redis key starts with this, so several deployments (or test runs) can share one Redis.
    redis_key_prefix: str = "bk"
    # None means "the real AWS endpoints"; the local stage points at the embedded emulator.
    aws_endpoint_url: str | None = None
    aws_region: str = "us-east-1"
    # How long one AWS call may take before the request answers 503 (a sick queue must not hang requests).
    aws_read_timeout_seconds: float = 5.0
    aws_connect_timeout_seconds: float = 2.0
    booking_queue_name: str = "booking-events"
    booking_dlq_name: str = "booking-events-dlq"
    # fifo_partition: requests wait in line per section (MessageGroupId) on this FIFO queue.
    fifo_queue_name: str = "booking-requests.fifo"
    fifo_dlq_name: str = "booking-requests-dlq.fifo"
    # stream_state: requests partitioned by section, the ledger's decision changelog, and where the
    # processor keeps its embedded store (Lambda's /tmp; rebuilt from the changelog when empty).
    request_stream_name: str = "booking-requests-stream"
    changelog_stream_name: str = "booking-decisions-changelog"
    stream_shard_count: int = 2
    ledger_dir: str = "/tmp/seat-booking-ledger"
    # redis_lock: how long a seat's lease lives unless its holder's watchdog re-arms it.
    seat_lease_seconds: float = 5.0
    # SQS moves a message to the DLQ once it has been received this many times.
    max_receive_count: int = 8
    # Visibility timeout of the booking queue; a failed message is instead made visible again after
    # backoff_base_seconds * 2 ** (receive_count - 1), capped at backoff_max_seconds. With 8 deliveries
    # and 2, 4, 8 … 60 s the consumer keeps trying for over 3 minutes even when every attempt fails at once
    # (MySQL down behind an open circuit): longer than an RDS Multi-AZ failover (typically 1-2 minutes).
    queue_visibility_timeout_seconds: int = 30
    backoff_base_seconds: float = 2.0
    backoff_max_seconds: float = 60.0
    # Reconcile (services/reconcile.py): a booking still PENDING this long after it was accepted (any
    # strategy: its message lost, parked in a DLQ or never decided) is failed and its seats released.
    # Must exceed the booking queue's retry window (queue_retry_window_seconds) plus the worst backlog; a
    # shorter value is raised to the window + 60 s.
    pending_hold_deadline_seconds: int = 15 * 60
    # A full reconcile run also checks the performances with bookings written within this window.
    reconcile_activity_window_seconds: int = 3600
    # Empty: the admin API refuses every call. from_env gives the local stage LOCAL_ADMIN_TOKEN.
    admin_token: str = ""
    default_strategy: str = "redis_async"
    max_seats_per_booking: int = 4
    # Seat map: a missing seat hash is filled from MySQL by one request at a time across processes (a lock
    # per performance, held at most seat_fill_lock_seconds); the others wait up to seat_fill_wait_seconds
    # for it and then answer 503. A rendered map younger than seat_map_cache_seconds is served without
    # asking Redis (0: every answer is checked against the map's change counter, so never stale).
    seat_fill_lock_seconds: float = 5.0
    seat_fill_wait_seconds: float = 3.0
    seat_map_cache_seconds: float = 0.0
    # The Bloom filter of catalogue ids (events, performances, seats) that answers 404 for unknown ids
    # without MySQL: sized for this many ids at this false-positive rate.
    bloom_expected_ids: int = 2_000_000
    bloom_false_positive_rate: float = 0.01
    # How long an accepted-but-unpersisted booking stays readable from Redis alone.
    pending_record_ttl_seconds: int = 7 * 24 * 3600
    idempotency_ttl_seconds: int = 24 * 3600
    db_pool_size: int = 16
    redis_pool_size: int = 64
    # Redis' circuit opens after this many outage errors in a row and lets one trial call through after
    # the reset time; while open, Redis-based work answers 503 at once (or falls back, see below).
    redis_breaker_failures: int = 5
    redis_breaker_reset_seconds: float = 5.0
    # "db_lock": while Redis is unavailable, bookings of Redis-based strategies are decided by db_lock
    # (MySQL row locks) instead of answering 503. Empty: answer 503.
    redis_down_fallback: str = ""
    db_connect_timeout_seconds: float = 3.0
    # A statement that runs longer than this fails (the connection is dropped): MySQL is in trouble.
    db_query_timeout_seconds: float = 10.0
    db_breaker_failures: int = 5
    db_breaker_reset_seconds: float = 5.0
    redis_socket_timeout_seconds: float = 2.0
    log_level: str = "INFO"
    # Booking metrics (EMF lines on stdout) are flushed when an invocation ends if at least this long has
    # passed since the last flush: 0 on Lambda (a process may be frozen right after an invocation); the
    # long-running local processes batch a few seconds of counts per line and spare the request path.
    metrics_flush_seconds: float = 0.0
    extra: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        default = cls()
        strategy = env.get("DEFAULT_STRATEGY", default.default_strategy)
        if strategy not in STRATEGY_NAMES:
            raise ValueError(f"DEFAULT_STRATEGY must be one of {STRATEGY_NAMES}, not {strategy!r}")
        stage = env.get("STAGE", default.stage)
        return cls(
            stage=stage,
            database_url=env.get("DATABASE_URL", default.database_url),
            redis_url=env.get("REDIS_URL", default.redis_url),
            redis_key_prefix=env.get("REDIS_KEY_PREFIX", default.redis_key_prefix),
            aws_endpoint_url=env.get("AWS_ENDPOINT_URL") or None,
            aws_region=env.get("AWS_REGION", env.get("AWS_DEFAULT_REGION", default.aws_region)),
            aws_read_timeout_seconds=_float(
                env, "AWS_READ_TIMEOUT_SECONDS", default.aws_read_timeout_seconds
            ),
            aws_connect_timeout_seconds=_float(
                env, "AWS_CONNECT_TIMEOUT_SECONDS", default.aws_connect_timeout_seconds
            ),
            booking_queue_name=env.get("BOOKING_QUEUE_NAME", default.booking_queue_name),
            booking_dlq_name=env.get("BOOKING_DLQ_NAME", default.booking_dlq_name),
            fifo_queue_name=env.get("FIFO_QUEUE_NAME", default.fifo_queue_name),
            fifo_dlq_name=env.get("FIFO_DLQ_NAME", default.fifo_dlq_name),
            request_stream_name=env.get("REQUEST_STREAM_NAME", default.request_stream_name),
            changelog_stream_name=env.get("CHANGELOG_STREAM_NAME", default.changelog_stream_name),
            stream_shard_count=_int(env, "STREAM_SHARD_COUNT", default.stream_shard_count),
            ledger_dir=env.get("LEDGER_DIR", default.ledger_dir),
            seat_lease_seconds=_float(env, "SEAT_LEASE_SECONDS", default.seat_lease_seconds),
            max_receive_count=_int(env, "MAX_RECEIVE_COUNT", default.max_receive_count),
            queue_visibility_timeout_seconds=_int(
                env, "QUEUE_VISIBILITY_TIMEOUT_SECONDS", default.queue_visibility_timeout_seconds
            ),
            backoff_base_seconds=_float(env, "BACKOFF_BASE_SECONDS", default.backoff_base_seconds),
            backoff_max_seconds=_float(env, "BACKOFF_MAX_SECONDS", default.backoff_max_seconds),
            pending_hold_deadline_seconds=_int(
                env, "PENDING_HOLD_DEADLINE_SECONDS", default.pending_hold_deadline_seconds
            ),
            reconcile_activity_window_seconds=_int(
                env, "RECONCILE_ACTIVITY_WINDOW_SECONDS", default.reconcile_activity_window_seconds
            ),
            admin_token=_admin_token(env, stage),
            default_strategy=strategy,
            max_seats_per_booking=_int(env, "MAX_SEATS_PER_BOOKING", default.max_seats_per_booking),
            seat_fill_lock_seconds=_float(env, "SEAT_FILL_LOCK_SECONDS", default.seat_fill_lock_seconds),
            seat_fill_wait_seconds=_float(env, "SEAT_FILL_WAIT_SECONDS", default.seat_fill_wait_seconds),
            seat_map_cache_seconds=_float(env, "SEAT_MAP_CACHE_SECONDS", default.seat_map_cache_seconds),
            bloom_expected_ids=_int(env, "BLOOM_EXPECTED_IDS", default.bloom_expected_ids),
            bloom_false_positive_rate=_float(
                env, "BLOOM_FALSE_POSITIVE_RATE", default.bloom_false_positive_rate
            ),
            pending_record_ttl_seconds=_int(
                env, "PENDING_RECORD_TTL_SECONDS", default.pending_record_ttl_seconds
            ),
            idempotency_ttl_seconds=_int(env, "IDEMPOTENCY_TTL_SECONDS", default.idempotency_ttl_seconds),
            db_pool_size=_int(env, "DB_POOL_SIZE", default.db_pool_size),
            redis_pool_size=_int(env, "REDIS_POOL_SIZE", default.redis_pool_size),
            redis_breaker_failures=_int(env, "REDIS_BREAKER_FAILURES", default.redis_breaker_failures),
            redis_breaker_reset_seconds=_float(
                env, "REDIS_BREAKER_RESET_SECONDS", default.redis_breaker_reset_seconds
            ),
            redis_down_fallback=_fallback(env.get("REDIS_DOWN_FALLBACK", default.redis_down_fallback)),
            db_connect_timeout_seconds=_float(
                env, "DB_CONNECT_TIMEOUT_SECONDS", default.db_connect_timeout_seconds
            ),
            db_query_timeout_seconds=_float(
                env, "DB_QUERY_TIMEOUT_SECONDS", default.db_query_timeout_seconds
            ),
            db_breaker_failures=_int(env, "DB_BREAKER_FAILURES", default.db_breaker_failures),
            db_breaker_reset_seconds=_float(
                env, "DB_BREAKER_RESET_SECONDS", default.db_breaker_reset_seconds
            ),
            redis_socket_timeout_seconds=_float(
                env, "REDIS_SOCKET_TIMEOUT_SECONDS", default.redis_socket_timeout_seconds
            ),
            log_level=env.get("LOG_LEVEL", default.log_level),
            metrics_flush_seconds=_float(env, "METRICS_FLUSH_SECONDS", default.metrics_flush_seconds),
        )

    def backoff_seconds(self, receive_count: int) -> int:
        """Exponential backoff for the n-th failed delivery: 2 s, 4 s, 8 s … (whole seconds for SQS)."""
        delay = self.backoff_base_seconds * 2 ** max(receive_count - 1, 0)
        return int(min(delay, self.backoff_max_seconds))

    def queue_retry_window_seconds(self) -> int:
        """The longest a booking message can be retried before the consumer gives up on it: each delivery
        is invisible for at most the visibility timeout (the consumer's run) plus the backoff it then sets."""
        return sum(
            self.queue_visibility_timeout_seconds + self.backoff_seconds(receive)
            for receive in range(1, self.max_receive_count + 1)
        )


settings = Settings.from_env()
