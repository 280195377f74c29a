"""The application stack of the end-to-end and browser tests: the production serving mode (Chalice behind
granian) and the worker as separate processes, exactly as `make run` starts them, against the test MariaDB
and Redis and an AWS emulator: moto server (the session's) or LocalStack in host mode (the session's own
instance, tests/support/localstack.py; skipped where it cannot run).

One stack per emulator for the whole session, shared by every module that asks for it (tests/conftest.py
imports these fixtures): starting a server and a worker per module cost a few seconds each. A module chooses
its emulator with a mark:

    pytestmark = ON_BOTH_EMULATORS  # booking flows through queues and streams, where the emulators differ
    pytestmark = ON_MOTO            # what never reaches an emulator (validation, the page) needs only one
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from chalicelib.config import Settings
from tests.support.localstack import localstack_environment
from tests.support.processes import Worker, free_port, stop, wait_until_up

ROOT = Path(__file__).resolve().parents[2]
ON_BOTH_EMULATORS = pytest.mark.parametrize(
    "emulator", ["moto", pytest.param("localstack", marks=pytest.mark.localstack)], indirect=True
)
ON_MOTO = pytest.mark.parametrize("emulator", ["moto"], indirect=True)


@pytest.fixture(scope="session")
def worker_state(tmp_path_factory) -> Path:
    """The worker's stream_state ledger and Kinesis checkpoints: its own (RocksDB has one opener per
    directory, and a developer's `make run` keeps the local stage's), and kept across modules so a later
    module's worker goes on from where the previous one stopped instead of replaying the streams."""
    return tmp_path_factory.mktemp("e2e-worker")


@pytest.fixture(scope="session")
def localstack_app_environment(localstack_endpoint: str, redis_client) -> Iterator[dict[str, str]]:
    """The app's environment against LocalStack, with its queues and streams provisioned there by
    infra/provision.py (the same names as on moto: the two emulators are separate worlds), and Redis keys of
    its own: the same requests (idempotency keys included) are replayed against both emulators."""
    from infra.provision import provision

    provision(Settings.from_env({**os.environ, "AWS_ENDPOINT_URL": localstack_endpoint}))
    prefix = f"{os.environ['REDIS_KEY_PREFIX']}-ls"
    yield {**localstack_environment(localstack_endpoint), "REDIS_KEY_PREFIX": prefix}
    for key in redis_client.scan_iter(match=f"{prefix}:*", count=1000):
        redis_client.delete(key)


@pytest.fixture(scope="session")
def emulator(request) -> str:
    """Which emulator the stack runs against: a module picks with ON_BOTH_EMULATORS or ON_MOTO (indirect
    parametrisation, so every module asking for moto shares the one moto stack)."""
    return request.param


@pytest.fixture(scope="session")
def app_environment(emulator: str, request) -> dict[str, str]:
    """The environment of the app's processes: the test session's, pointed at this module's emulator."""
    if emulator == "localstack":
        return {**os.environ, **request.getfixturevalue("localstack_app_environment")}
    return dict(os.environ)


@pytest.fixture(scope="session")
def app_settings(app_environment: dict[str, str]) -> Settings:
    """The settings the app's processes run with (their Redis key prefix, their emulator)."""
    return Settings.from_env(app_environment)


@pytest.fixture(scope="session")
def worker(services, worker_state: Path, emulator: str, app_environment: dict[str, str]) -> Iterator[Worker]:
    """The stack's worker (every event source and schedule), as `make run` starts it: WORKER_PROCESSES
    processes, one per core by default, under a supervisor (Worker.paused stops them all)."""
    # Each emulator has its own streams: the worker's positions in one mean nothing in the other.
    state = worker_state / emulator
    state.mkdir(exist_ok=True)
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "infra.local.worker",
            "--concurrency",
            "2",
            "--stream-checkpoints",
            str(state / "kinesis-checkpoints.json"),
            "--function-name-prefix",
            "seat-booking-e2e",
        ],
        cwd=ROOT,
        env={**app_environment, "LEDGER_DIR": str(state / "ledger")},
    )
    try:
        yield Worker(process)
    finally:
        stop(process)


@contextlib.contextmanager
def serving(environment: dict[str, str], workers: int = 2) -> Iterator[str]:
    """The app behind granian (`make run`'s serving mode) with this environment -> its base URL, until the
    block ends."""
    port = free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "infra.local.wsgi",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            str(workers),
        ],
        cwd=ROOT,
        env=environment,
    )
    try:
        wait_until_up(f"http://127.0.0.1:{port}/health", server)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop(server)


@pytest.fixture(scope="session")
def base_url(worker: Worker, app_environment: dict[str, str]) -> Iterator[str]:
    with serving(app_environment) as url:
        yield url


@pytest.fixture(scope="session")
def http(base_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=base_url, timeout=10) as client:
        yield client
