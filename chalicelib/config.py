"""One Settings object built from the environment; nothing else in the code reads os.environ.

Chalice copies a stage's `environment_variables` from `.chalice/config.json` into the Lambda (and into
`chalice local`); the local runtime does the same, so every stage differs only in these values.

Each field's environment variable is its name in upper case (`redis_key_prefix`: `REDIS_KEY_PREFIX`), declared
here only: infra, the tests and the bench ask `Settings.env_name` / `as_environment` instead of spelling them.
pydantic-settings reads and converts them (a malformed value fails naming its variable). Only
`Settings.from_env` reads an environment; `Settings(...)` is the values given and the defaults in code, so a
test's or a tool's Settings never picks up a stray variable of the shell it runs in.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Annotated, Literal

from pydantic import AliasChoices, BeforeValidator, Field, field_validator
from pydantic_core import PydanticUseDefault
from pydantic_settings import BaseSettings, EnvSettingsSource, PydanticBaseSettingsSource, SettingsConfigDict

from chalicelib.domain.models import STRATEGY_NAMES

# The stage a developer's machine runs (the default: no STAGE set).
LOCAL_STAGE = "local"
# The admin token of the local stage only. It is public (it is in the README), so no other stage may fall
# back to it: there an unset ADMIN_TOKEN leaves the admin API locked (app.py answers 401 to everyone).
LOCAL_ADMIN_TOKEN = "local-admin-token"
# The key the local stage signs its users' and admission tokens with, when TOKEN_SIGNING_KEY is unset. Public
# like the admin token above: no other stage falls back to it (there an unset key refuses every token).
LOCAL_TOKEN_SIGNING_KEY = "local-token-signing-key-not-a-secret-0123456789"


def _unset_if_empty(value: object) -> object:
    """An empty number or endpoint (`X=` in a shell or a stage) means "not set": the default applies. A text
    setting keeps an empty value as given (an empty STAGE is not the local stage)."""
    if value == "":
        raise PydanticUseDefault
    return value


_EMPTY_IS_UNSET = BeforeValidator(_unset_if_empty)
Int = Annotated[int, _EMPTY_IS_UNSET]
Float = Annotated[float, _EMPTY_IS_UNSET]
Bool = Annotated[bool, _EMPTY_IS_UNSET]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        frozen=True,
        alias_generator=str.upper,  # a field's variable: its name in upper case
        case_sensitive=True,  # …exactly that (`stage=` is not STAGE)
        validate_by_alias=True,  # the environment (from_env)
        validate_by_name=True,  # code: Settings(stage="prod")
        extra="forbid",  # Settings(stgae="prod") fails (from_env passes only Settings' own variables)
    )

    stage: str = LOCAL_STAGE
    database_url: str = "mysql://root@127.0.0.1:3306/booking"
    redis_url: str = "redis://127.0.0.1:6379/0"
    # Redis Cluster (ElastiCache cluster mode): REDIS_URL names a seed node, the client finds the others and
    # routes each key to its shard (every key of a performance shares one slot: adapters/redis_seats.py).
    redis_cluster: Bool = False
    # Every Redis key starts with this, so several deployments (or test runs) can share one Redis.
    redis_key_prefix: str = "bk"
    # None means "the real AWS endpoints"; the local stage points at the embedded emulator.
    aws_endpoint_url: Annotated[str | None, _EMPTY_IS_UNSET] = None
    # AWS_DEFAULT_REGION (the SDKs' variable) when AWS_REGION is not set.
    aws_region: str = Field("us-east-1", validation_alias=AliasChoices("AWS_REGION", "AWS_DEFAULT_REGION"))
    # How long one AWS call may take before the request answers 503 (a sick queue must not hang requests).
    aws_read_timeout_seconds: Float = 5.0
    aws_connect_timeout_seconds: Float = 2.0
    booking_queue_name: str = "booking-events"
    booking_dlq_name: str = "booking-events-dlq"
    # fifo_partition: requests wait in line per section (MessageGroupId) on this FIFO queue.
    fifo_queue_name: str = "booking-requests.fifo"
    fifo_dlq_name: str = "booking-requests-dlq.fifo"
    # stream_state: requests partitioned by section, the ledger's decision changelog, and where the
    # processor keeps its embedded store (Lambda's /tmp; rebuilt from the changelog when empty).
    request_stream_name: str = "booking-requests-stream"
    changelog_stream_name: str = "booking-decisions-changelog"
    stream_shard_count: Int = 2
    # A process's records for one stream go out in shared PutRecords calls (one in flight per stream): the
    # first record of a batch waits at most this long for others. 0: at once, and whatever queued while the
    # previous call was in flight still goes in one call, which under load is all a linger would gather
    # (docs/strategies.md#batched-putrecords has the measurements). A record not in the stream within
    # aws_read_timeout_seconds of its put fails (the request answers 503).
    stream_linger_ms: Float = 0.0
    ledger_dir: str = "/tmp/seat-booking-ledger"
    # redis_lock: how long a seat's lease lives unless its holder's watchdog re-arms it.
    seat_lease_seconds: Float = 5.0
    # SQS moves a message to the DLQ once it has been received this many times.
    max_receive_count: Int = 8
    # Visibility timeout of the booking queue; a failed message is instead made visible again after
    # backoff_base_seconds * 2 ** (receive_count - 1), capped at backoff_max_seconds. With 8 deliveries
    # and 2, 4, 8 … 60 s the consumer keeps trying for over 3 minutes even when every attempt fails at once
    # (MySQL down behind an open circuit): longer than an RDS Multi-AZ failover (typically 1-2 minutes).
    queue_visibility_timeout_seconds: Int = 30
    backoff_base_seconds: Float = 2.0
    backoff_max_seconds: Float = 60.0
    # Reconcile (services/reconcile.py): a booking still PENDING this long after it was accepted (any
    # strategy: its message lost, parked in a DLQ or never decided) is failed and its seats released.
    # Must exceed the booking queue's retry window (queue_retry_window_seconds) plus the worst backlog; a
    # shorter value is raised to the window + 60 s.
    pending_hold_deadline_seconds: Int = 15 * 60
    # A full reconcile run also checks the performances with bookings written within this window.
    reconcile_activity_window_seconds: Int = 3600
    # Empty: the admin API refuses every call. from_env gives the local stage LOCAL_ADMIN_TOKEN when unset.
    admin_token: str = ""
    # Who the caller of a booking route is (docs/api.md#identity). "local": the app verifies the
    # `Authorization: Bearer` JWT (HS256, token_signing_key). "cognito": API Gateway's Cognito user pool
    # authorizer has verified it before the function runs; the app reads `sub` from the verified claims.
    identity_provider: Literal["local", "cognito"] = "local"
    # Signs the local users' tokens and, in every stage, the waiting rooms' admission tokens. Empty: every
    # token is refused and none is issued. from_env gives the local stage LOCAL_TOKEN_SIGNING_KEY when unset.
    token_signing_key: str = ""
    # POST /dev/token {"user_id"} -> a user's token, for scripts, tests, the bench and the page's sign-in.
    # Unset: on in the local stage only (from_env); never on in AWS (infra/aws_template.py refuses it).
    dev_tokens: Annotated[bool | None, _EMPTY_IS_UNSET] = None
    user_token_seconds: Int = 3600
    # Booking writes (book, cancel, confirm, extend) per user and per client address: token buckets in Redis
    # shared by every process; over either, 429 RATE_LIMITED with Retry-After. 0 requests: no limit.
    user_rate_limit: Int = 20
    user_rate_window_seconds: Float = 10.0
    address_rate_limit: Int = 1000
    address_rate_window_seconds: Float = 1.0
    # How long a waiting room's admission token admits its user to the performance's booking writes: long
    # enough for a hold, its extensions and the confirm (HOLD_SECONDS x (1 + HOLD_MAX_EXTENSIONS) = 30 min).
    admission_token_seconds: Int = 3600
    # A waiting room's ticket whose turn has come must be collected (read, for its admission token) within
    # this long, or it lapses and its user joins again at the back (the AWS Virtual Waiting Room's default
    # expiry of a position: 15 min).
    waiting_room_collect_seconds: Float = 900.0
    default_strategy: str = "redis_async"
    max_seats_per_booking: Int = 4
    # Seat map: a missing seat hash is filled from MySQL by one request at a time across processes (a lock
    # per performance, held at most seat_fill_lock_seconds); the others wait up to seat_fill_wait_seconds
    # for it and then answer 503. A rendered map younger than seat_map_cache_seconds is served without
    # asking Redis (0: every answer is checked against the map's change counter). A performance's map is
    # rendered at most once per seat_map_render_seconds across processes (the version rendered last is
    # served meanwhile), so a rush of changes cannot make every read a render; the map lags Redis by at most
    # the sum of the two (0 and 0: never), and so do deltas (?since=).
    seat_fill_lock_seconds: Float = 5.0
    seat_fill_wait_seconds: Float = 3.0
    seat_map_cache_seconds: Float = 0.0
    seat_map_render_seconds: Float = 0.25
    # A seat a process was just refused is refused again from its memory for this long, without Redis
    # (services/recently_taken.py): the hot seat's refusals. 0: off.
    recently_taken_seconds: Float = 0.25
    # Holds ("hold": true): how long the seats are the user's before they go back to the crowd unless
    # confirmed, and how often POST /bookings/{id}/extend may push that back by the same again.
    hold_seconds: Float = 600.0
    hold_max_extensions: Int = 2
    # A limit per person: a user's seats of one performance across their PENDING, HELD and CONFIRMED
    # bookings that hold seats (409 USER_LIMIT; an in-line booking ends REJECTED with reason USER_LIMIT).
    max_seats_per_user: Int = 8
    # The Bloom filter of catalogue ids (events, performances, seats) that answers 404 for unknown ids
    # without MySQL: sized for this many ids at this false-positive rate.
    bloom_expected_ids: Int = 2_000_000
    bloom_false_positive_rate: Float = 0.01
    # How long an accepted-but-unpersisted booking stays readable from Redis alone.
    pending_record_ttl_seconds: Int = 7 * 24 * 3600
    idempotency_ttl_seconds: Int = 24 * 3600
    db_pool_size: Int = 16
    redis_pool_size: Int = 64
    # Redis' circuit opens after this many outage errors in a row and lets one trial call through after
    # the reset time; while open, Redis-based work answers 503 at once (or falls back, see below).
    redis_breaker_failures: Int = 5
    redis_breaker_reset_seconds: Float = 5.0
    # "db_lock": while Redis is unavailable, bookings of Redis-based strategies are decided by db_lock
    # (MySQL row locks) instead of answering 503. Empty: answer 503.
    redis_down_fallback: Literal["", "db_lock"] = ""
    db_connect_timeout_seconds: Float = 3.0
    # A statement that runs longer than this fails (the connection is dropped): MySQL is in trouble.
    db_query_timeout_seconds: Float = 10.0
    db_breaker_failures: Int = 5
    db_breaker_reset_seconds: Float = 5.0
    redis_socket_timeout_seconds: Float = 2.0
    log_level: str = "INFO"
    # Booking metrics (EMF lines on stdout) are flushed when an invocation ends if at least this long has
    # passed since the last flush: 0 on Lambda (a process may be frozen right after an invocation); the
    # long-running local processes batch a few seconds of counts per line and spare the request path.
    metrics_flush_seconds: Float = 0.0

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Settings(...) is its arguments and the defaults in code, never the process environment: from_env
        is the one door to an environment (and .env or secret files are not read at all)."""
        return (init_settings,)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """The settings of an environment (os.environ by default; a stage's variables, a child process'):
        each field from its variable, the default in code where the variable is unset. A malformed value
        raises pydantic's ValidationError (a ValueError) naming the variable."""
        values = _Environment(cls, os.environ if env is None else env)()
        settings = cls.model_validate(values)
        if settings.stage != LOCAL_STAGE:
            return settings.model_copy(update={"dev_tokens": bool(settings.dev_tokens)})
        # Only the local stage falls back to the public token and key; any other stays locked (see above).
        return settings.model_copy(
            update={
                "admin_token": settings.admin_token or LOCAL_ADMIN_TOKEN,
                "token_signing_key": settings.token_signing_key or LOCAL_TOKEN_SIGNING_KEY,
                "dev_tokens": settings.dev_tokens is not False,
            }
        )

    @classmethod
    def env_names_of(cls, field: str) -> tuple[str, ...]:
        """The variables a field is read from, in order of precedence."""
        alias = cls.model_fields[field].validation_alias
        if isinstance(alias, AliasChoices):
            return tuple(str(choice) for choice in alias.choices)
        return (str(alias),)

    @classmethod
    def env_name(cls, field: str) -> str:
        """The variable a field is set by (`redis_key_prefix`: `REDIS_KEY_PREFIX`)."""
        return cls.env_names_of(field)[0]

    @classmethod
    def env_names(cls) -> tuple[str, ...]:
        """Every variable from_env reads, alternatives included (AWS_DEFAULT_REGION)."""
        return tuple(name for field in cls.model_fields for name in cls.env_names_of(field))

    def replace(self, **changes: object) -> Settings:
        """A copy with these fields changed, validated as Settings(...) is (a misspelt field fails)."""
        return type(self).model_validate({**self.model_dump(), **changes})

    def as_environment(self, *fields: str) -> dict[str, str]:
        """These settings (the fields named, or all) as the variables from_env reads them back from: for a
        process started with them, or a Lambda's template. None is written empty (unset)."""
        chosen = fields or tuple(type(self).model_fields)
        return {
            self.env_name(field): "" if (value := getattr(self, field)) is None else str(value)
            for field in chosen
        }

    @field_validator("default_strategy")
    @classmethod
    def _a_known_strategy(cls, strategy: str) -> str:
        if strategy not in STRATEGY_NAMES:
            raise ValueError(f"must be one of {STRATEGY_NAMES}, not {strategy!r}")
        return strategy

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


class _Environment(EnvSettingsSource):
    """pydantic-settings' environment source over a given mapping, and over Settings' own variables only
    (validate_by_name would otherwise let it also read a lower-case `stage` or `redis_url`)."""

    def __init__(self, settings_cls: type[Settings], environ: Mapping[str, str]) -> None:
        # Set before super().__init__, which loads the variables.
        self._variables = {name: environ[name] for name in settings_cls.env_names() if name in environ}
        super().__init__(settings_cls)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        # The hook pydantic-settings' own .env source overrides (pinned version; tests/unit/test_settings.py).
        return self._variables


settings = Settings.from_env()
