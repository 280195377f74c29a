"""The fault tests' own world: a MariaDB and a Redis server of their own (tests/support/servers.py), a
database migrated on it, queues, DLQs and streams of their own names on the session's moto server, and a
container built on all of it (chalicelib/bootstrap.py), so killing and stopping things here never touches
what the other tests use."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import pytest

from chalicelib import bootstrap
from chalicelib.config import Settings
from infra.local.kinesis_poller import FileCheckpoints
from infra.migrate import migrate
from infra.provision import provision
from tests.faults.harness import Fault
from tests.support.servers import MariaDBServer, RedisServer

SHIPPED = Settings()  # the defaults in code, as a deployment without overrides has them


@pytest.fixture(scope="module")
def own_mariadb() -> Iterator[MariaDBServer]:
    server = MariaDBServer().start()
    yield server
    server.remove()


@pytest.fixture(scope="module")
def own_redis() -> Iterator[RedisServer]:
    server = RedisServer().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def fault_settings(settings: Settings, own_mariadb, own_redis, tmp_path_factory, moto_endpoint) -> Settings:
    run = f"fault-{os.getpid()}"
    return settings.replace(
        database_url=own_mariadb.url("booking_fault"),
        redis_url=own_redis.url,
        redis_key_prefix="fault",
        booking_queue_name=f"booking-events-{run}",
        booking_dlq_name=f"booking-events-{run}-dlq",
        fifo_queue_name=f"booking-requests-{run}.fifo",
        fifo_dlq_name=f"booking-requests-{run}-dlq.fifo",
        request_stream_name=f"booking-requests-{run}",
        changelog_stream_name=f"booking-decisions-{run}",
        ledger_dir=str(tmp_path_factory.mktemp("fault-ledger") / "ledger"),
        # The shipped retry policy (the session's environment shortens it for the other tests): eight
        # deliveries, backoff 2, 4, 8 … 60 s between them. The visibility timeout stays at the default 30 s:
        # AWS refuses an event source mapping whose queue's visibility timeout is below the function's
        # timeout, and the local pollers' (and the worker's) function timeout is 30 s.
        max_receive_count=SHIPPED.max_receive_count,
        backoff_base_seconds=SHIPPED.backoff_base_seconds,
        backoff_max_seconds=SHIPPED.backoff_max_seconds,
        queue_visibility_timeout_seconds=SHIPPED.queue_visibility_timeout_seconds,
        # Outages are short here: circuits probe again after 1 s, and nothing waits long on a dead server.
        redis_breaker_reset_seconds=1.0,
        db_breaker_reset_seconds=1.0,
        db_connect_timeout_seconds=1.0,
        redis_socket_timeout_seconds=0.5,
        aws_read_timeout_seconds=10.0,
    )


@pytest.fixture(scope="module")
def fault(fault_settings: Settings, own_mariadb, own_redis, tmp_path_factory) -> Iterator[Fault]:
    migrate(fault_settings.database_url)
    resources = provision(fault_settings)
    container = bootstrap.build(fault_settings)
    checkpoints = FileCheckpoints(tmp_path_factory.mktemp("fault-checkpoints") / "kinesis-checkpoints.json")
    world = Fault(
        container=container,
        settings=fault_settings,
        mariadb=own_mariadb,
        redis_server=own_redis,
        booking=resources["booking"],
        fifo=resources["fifo"],
        checkpoints=checkpoints,
    )
    yield world
    container.db.close()
    container.redis.close()
    # Leave nothing behind on the session's emulator.
    for pair in (world.booking, world.fifo):
        for url in (pair.queue_url, pair.dlq_url):
            with contextlib.suppress(Exception):
                world.sqs.delete_queue(QueueUrl=url)
    for stream in (fault_settings.request_stream_name, fault_settings.changelog_stream_name):
        with contextlib.suppress(Exception):
            world.kinesis.delete_stream(StreamName=stream, EnforceConsumerDeletion=True)


@pytest.fixture()
def healthy(fault: Fault) -> Iterator[Fault]:
    """Each scenario starts and ends with everything up and the DLQs empty."""
    fault.clear_dead_letters()
    yield fault
    for consumers in list(fault.running):
        consumers.stop()
    fault.mariadb.resume()
    if not fault.mariadb.running():
        fault.mariadb.start()
    if not fault.redis_server.running():
        fault.redis_server.start()
