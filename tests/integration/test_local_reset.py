"""`make reset` (infra/local/reset.py) run as a process, as make runs it, on a database, Redis prefix,
ledger and checkpoint file of the test's own: it empties exactly the stage's state, and refuses while the
stage's server still answers."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pymysql
import pytest
import redis

from infra.migrate import create_database_if_missing, drop_database
from tests.support.processes import free_port

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture()
def stage(settings, redis_client: redis.Redis, tmp_path: Path) -> Iterator[dict[str, str]]:
    """The local stage's environment, pointed at state of this test's own, with some state in each place."""
    run = uuid.uuid4().hex[:8]
    database_url = settings.database_url.rsplit("/", 1)[0] + f"/reset_{run}"
    environment = {
        **os.environ,
        "DATABASE_URL": database_url,
        "REDIS_KEY_PREFIX": f"reset{run}",
        "LEDGER_DIR": str(tmp_path / "ledger"),
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{free_port()}",  # nothing answers there
        "PORT": str(free_port()),
    }
    create_database_if_missing(database_url)
    (tmp_path / "ledger").mkdir()
    (tmp_path / "ledger" / "CURRENT").write_text("a ledger")
    (tmp_path / "checkpoints.json").write_text("{}")
    yield environment
    drop_database(database_url)
    for key in redis_client.scan_iter(match=f"{environment['REDIS_KEY_PREFIX']}:*"):
        redis_client.delete(key)


def reset(environment: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "infra.local.reset",
            "--stream-checkpoints",
            str(tmp_path / "checkpoints.json"),
        ],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )


def databases() -> set[str]:
    connection = pymysql.connect(host="127.0.0.1", port=3306, user="root")
    try:
        with connection.cursor() as cursor:
            cursor.execute("SHOW DATABASES")
            return {row[0] for row in cursor.fetchall()}
    finally:
        connection.close()


def test_reset_empties_exactly_the_stages_state(
    stage: dict[str, str], settings, redis_client: redis.Redis, tmp_path: Path
) -> None:
    prefix, database = stage["REDIS_KEY_PREFIX"], stage["DATABASE_URL"].rsplit("/", 1)[1]
    redis_client.set(f"{prefix}:{{p1}}:seats", "x")
    redis_client.set(f"{prefix}:idem:k", "x")
    redis_client.set(f"{settings.redis_key_prefix}:not-the-stage", "kept")

    finished = reset(stage, tmp_path)

    assert finished.returncode == 0, finished.stderr
    assert "2 Redis key(s) deleted" in finished.stdout
    assert database not in databases()
    assert list(redis_client.scan_iter(match=f"{prefix}:*")) == []
    assert redis_client.get(f"{settings.redis_key_prefix}:not-the-stage") == "kept"
    assert not (tmp_path / "ledger").exists() and not (tmp_path / "checkpoints.json").exists()


class _Healthy(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


def test_reset_refuses_while_the_server_answers_and_changes_nothing(
    stage: dict[str, str], settings, redis_client: redis.Redis, tmp_path: Path
) -> None:
    prefix, database = stage["REDIS_KEY_PREFIX"], stage["DATABASE_URL"].rsplit("/", 1)[1]
    redis_client.set(f"{prefix}:{{p1}}:seats", "x")
    server = ThreadingHTTPServer(("127.0.0.1", int(stage["PORT"])), _Healthy)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        finished = reset(stage, tmp_path)
    finally:
        server.shutdown()
        server.server_close()

    assert finished.returncode != 0
    assert "stop `make run`" in finished.stderr
    assert database in databases()
    assert redis_client.get(f"{prefix}:{{p1}}:seats") == "x"
    assert (tmp_path / "ledger" / "CURRENT").exists() and (tmp_path / "checkpoints.json").exists()
