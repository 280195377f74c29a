"""The end-to-end server: the production serving mode (Chalice behind granian) and the worker as separate
processes, exactly as `make run` starts them, against the test MariaDB, Redis and moto. One pair per test
module (module scope), shared by every test of that module."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.processes import free_port, stop, wait_until_up

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def worker_state(tmp_path_factory) -> Path:
    """The worker's stream_state ledger and Kinesis checkpoints: its own (RocksDB has one opener per
    directory, and a developer's `make run` keeps the local stage's), and kept across modules so a later
    module's worker goes on from where the previous one stopped instead of replaying the streams."""
    return tmp_path_factory.mktemp("e2e-worker")


@pytest.fixture(scope="module")
def base_url(services, worker_state: Path) -> Iterator[str]:
    port = free_port()
    state = worker_state
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
            "2",
        ],
        cwd=ROOT,
    )
    worker = subprocess.Popen(
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
        env={**os.environ, "LEDGER_DIR": str(state / "ledger")},
    )
    try:
        wait_until_up(f"http://127.0.0.1:{port}/health", server)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop(server)
        stop(worker)


@pytest.fixture(scope="module")
def http(base_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=base_url, timeout=10) as client:
        yield client
