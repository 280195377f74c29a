"""Shared fixtures: a real MariaDB database and Redis db of the tests' own, and a moto server for SQS.

The environment is set before anything imports chalicelib.config (settings are read once, at import), so the
app under test, its SQS decorator's queue name and every client point at the test resources.
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
from collections.abc import Callable, Iterator

import pymysql
import pytest
import redis


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


MOTO_PORT = _free_port()
# Each test session has a database and a Redis key prefix of its own (dropped at the end), so a developer's
# run and a CI run on the same machine never see each other's data.
RUN_ID = f"{os.getpid()}"
TEST_DATABASE_URL = os.environ.get("TEST_DATABASE_URL", f"mysql://root@127.0.0.1:3306/booking_test_{RUN_ID}")
TEST_REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
LEDGER_DIR = os.path.join(tempfile.gettempdir(), f"seat-booking-test-{RUN_ID}", "ledger")
os.environ.update(
    {
        "STAGE": "test",
        "DATABASE_URL": TEST_DATABASE_URL,
        "REDIS_URL": TEST_REDIS_URL,
        "REDIS_KEY_PREFIX": f"t{RUN_ID}",
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{MOTO_PORT}",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
        "BOOKING_QUEUE_NAME": "booking-events-test",
        "BOOKING_DLQ_NAME": "booking-events-test-dlq",
        "MAX_RECEIVE_COUNT": "3",
        # Short backoff so retry tests finish fast; the shape (doubling per receive) is what they check.
        "BACKOFF_BASE_SECONDS": "1",
        "BACKOFF_MAX_SECONDS": "4",
        "ADMIN_TOKEN": "test-admin-token",
        # Users sign in as the local stage's do: POST /dev/token, tokens signed with a key of the run's own.
        "DEV_TOKENS": "1",
        # The suite's servers take every test's bookings from one address and many from one user: the limits
        # are tested where a test sets them (tests/e2e/test_rate_limits.py), not in every other test.
        "USER_RATE_LIMIT": "0",
        "ADDRESS_RATE_LIMIT": "0",
        "TOKEN_SIGNING_KEY": f"test-token-signing-key-{RUN_ID}-0123456789abcdef",
        "DB_POOL_SIZE": "32",
        # The races release 500 threads at once on one container; each stands for a concurrent invocation,
        # which on Lambda is a process with a connection of its own (and behind granian, 16 threads per
        # worker share 64). Sharing the default 64 among 500 threads made them queue for the pool, and a
        # starved 2-core CI machine let the last waits pass their 2 s bound (a 503, "busy"): seen in CI as
        # 11 and ~120 RedisUnavailable in the hot-seat races, a property of 500 threads in one process, not
        # of any deployment. Pool exhaustion itself is tested on purpose (test_redis_cluster_client.py).
        "REDIS_POOL_SIZE": "1024",
        # moto server's SQS takes ~100 sends/s and slows as a queue grows: a 500-request burst on one FIFO
        # queue waits several seconds for it. The races measure correctness, not the emulator's capacity.
        "AWS_READ_TIMEOUT_SECONDS": "60",
        # …and under a 500-thread burst on a loaded 2-core machine, even its TCP accept queue lags (its listen
        # backlog is raised to 4096 too: infra/local/emulator.py start_moto_server).
        "AWS_CONNECT_TIMEOUT_SECONDS": "20",
        # stream_state's embedded ledger (RocksDB) lives in a directory of this run's own.
        "LEDGER_DIR": LEDGER_DIR,
        # Every map version rendered: the tests that read a map right after changing a seat check the seat
        # state, not the render interval (0.25 s by default: a map may lag that long), which
        # tests/unit/test_seat_map_changes.py covers; deltas are exact either way.
        "SEAT_MAP_RENDER_SECONDS": "0",
        # Likewise no refusal from a process's memory of seats it was just refused (0.25 s by default): a
        # test that frees a seat by any path and books it at once expects the seat. The memory has tests of
        # its own (test_recently_taken.py, test_booking_service.py, the races), and `make bench` runs with it.
        "RECENTLY_TAKEN_SECONDS": "0",
    }
)

from chalicelib.config import Settings  # noqa: E402  (after the environment is set)
from infra.migrate import drop_database  # noqa: E402
from tests.support.app_stack import (  # noqa: E402, F401  (session fixtures: the e2e and browser stack)
    app_environment,
    app_settings,
    base_url,
    emulator,
    http,
    localstack_app_environment,
    worker,
    worker_state,
)
from tests.support.cluster import redis_cluster  # noqa: E402, F401  (session fixture, on first use)
from tests.support.factories import event_body  # noqa: E402
from tests.support.localstack import localstack_endpoint  # noqa: E402, F401  (session fixture)


@pytest.fixture(scope="session")
def settings() -> Settings:
    return Settings.from_env()


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    from infra.local.emulator import start_moto_server, stop_moto_server

    server, _ = start_moto_server("127.0.0.1", MOTO_PORT)  # the one `make run` uses, Kinesis puts serialised
    yield os.environ["AWS_ENDPOINT_URL"]
    stop_moto_server(server)


@pytest.fixture(scope="session")
def database(settings: Settings) -> Iterator[str]:
    from infra.migrate import migrate

    drop_database(settings.database_url)
    migrate(settings.database_url)
    yield settings.database_url
    drop_database(settings.database_url)


@pytest.fixture(scope="session")
def redis_client(settings: Settings) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(settings.redis_url, decode_responses=True)

    def forget_this_runs_keys() -> None:
        for key in client.scan_iter(match=f"{settings.redis_key_prefix}:*", count=1000):
            client.delete(key)

    forget_this_runs_keys()
    yield client
    forget_this_runs_keys()
    client.close()


@pytest.fixture(scope="session")
def queues(settings: Settings, moto_endpoint: str):
    from infra.provision import provision

    return provision(settings)


@pytest.fixture(scope="session")
def services(database: str, redis_client: redis.Redis, queues):
    """The process-wide container the app itself uses, against the test resources."""
    from chalicelib.bootstrap import container

    yield container()
    shutil.rmtree(os.path.dirname(LEDGER_DIR), ignore_errors=True)


@pytest.fixture(scope="session")
def stream_checkpoints():
    """Where the local Kinesis event sources have read to, kept for the whole run (as the ESM keeps it)."""
    from infra.local.kinesis_poller import FileCheckpoints

    return FileCheckpoints(os.path.join(os.path.dirname(LEDGER_DIR), "kinesis-checkpoints.json"))


@pytest.fixture()
def sql(database: str, settings: Settings) -> Iterator[Callable[..., list[tuple]]]:
    """Run an audit query on a connection of its own (never the app's pool)."""
    from urllib.parse import urlsplit

    parts = urlsplit(settings.database_url)
    connection = pymysql.connect(
        host=parts.hostname,
        port=parts.port or 3306,
        user=parts.username or "root",
        database=parts.path.lstrip("/"),
        autocommit=True,
    )

    def run(query: str, *args) -> list[tuple]:
        with connection.cursor() as cursor:
            cursor.execute(query, args)
            return list(cursor.fetchall())

    yield run
    connection.close()


@pytest.fixture()
def new_performance(services) -> Callable[..., dict]:
    """Create an event with one performance through the catalogue service; returns the performance dict."""

    def make(**kwargs) -> dict:
        event = services.catalogue.create_event(event_body(**kwargs))
        return event["performances"][0]

    return make


@pytest.fixture()
def drain(services, queues, settings: Settings, stream_checkpoints) -> Callable[..., int]:
    """Deliver everything waiting on the app's queues and streams to its real handlers, with Lambda's
    semantics, until nothing moves anywhere (a persisted decision may put a release on a stream)."""
    import boto3

    import app as app_module
    from infra.local import kinesis_poller, sqs_poller
    from tests.support import draining

    def client(service: str):
        return boto3.client(service, endpoint_url=settings.aws_endpoint_url, region_name=settings.aws_region)

    pollers = [
        *sqs_poller.pollers_for_app(
            app_module, client("sqs"), function_name_prefix="seat-booking-test", wait_time_seconds=0
        ),
        *kinesis_poller.pollers_for_app(
            app_module,
            client("kinesis"),
            function_name_prefix="seat-booking-test",
            checkpoints=stream_checkpoints,
        ),
    ]

    sqs = client("sqs")
    queue_urls = [p.queue_url for p in pollers if isinstance(p, sqs_poller.SqsEventSourcePoller)]

    def run(timeout: float = 120) -> int:
        return draining.drain(pollers, lambda: draining.messages_on(sqs, queue_urls), timeout)

    return run
