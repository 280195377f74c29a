"""Plain `chalice local` (Chalice's own dev server) serves the same app, started as `make chalice-local`
starts it (infra/local/chalice_local.py, auto-reloader and all) from an environment with no AWS
credentials, as a newcomer's shell has none.

`chalice local` copies a stage's environment_variables over the process environment, so the test runs it on
a copy of the project whose config has one extra stage pointing at the test MariaDB, Redis and moto."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.support.factories import event_body
from tests.support.http import conforms, signed_in
from tests.support.processes import free_port, group_alive, stop, wait_until_up
from tests.support.waiting import wait_for

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
TEST_VARIABLES = (
    "STAGE",
    "DATABASE_URL",
    "REDIS_URL",
    "REDIS_KEY_PREFIX",
    "AWS_ENDPOINT_URL",
    "BOOKING_QUEUE_NAME",
    "BOOKING_DLQ_NAME",
    "MAX_RECEIVE_COUNT",
    "ADMIN_TOKEN",
    # Its users sign in there too (POST /dev/token), with tokens of the test run's key.
    "DEV_TOKENS",
    "TOKEN_SIGNING_KEY",
)
AWS_CREDENTIALS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE")


@pytest.fixture()
def chalice_local(services, tmp_path: Path):
    project = tmp_path / "project"
    shutil.copytree(ROOT / "chalicelib", project / "chalicelib", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "app.py", project / "app.py")
    (project / ".chalice").mkdir()
    config = json.loads((ROOT / ".chalice" / "config.json").read_text())
    config["stages"]["smoke"] = {"environment_variables": {name: os.environ[name] for name in TEST_VARIABLES}}
    (project / ".chalice" / "config.json").write_text(json.dumps(config))
    port = free_port()
    without_credentials = {name: value for name, value in os.environ.items() if name not in AWS_CREDENTIALS}
    process = subprocess.Popen(
        [
            *(sys.executable, "-m", "infra.local.chalice_local", "--stage", "smoke"),
            *("--port", str(port), "--project-dir", str(project)),
        ],
        cwd=ROOT,
        env={**without_credentials, "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none")},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # the reloader serves from a child: stop() ends the whole group
    )
    try:
        wait_until_up(f"http://127.0.0.1:{port}/health", process, timeout=60)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop(process)
    wait_for(lambda: not group_alive(process), 10, "every process of chalice local's group to be gone")


def test_chalice_local_serves_the_contract(chalice_local: str, drain) -> None:
    with httpx.Client(base_url=chalice_local, timeout=10) as http:
        assert http.get("/health").json()["status"] == "ok"
        created = http.post(
            "/admin/events", json=event_body(), headers={"X-Admin-Token": os.environ["ADMIN_TOKEN"]}
        )
        assert created.status_code == 201, created.text
        performance = created.json()["performances"][0]
        seat = performance["sections"][0]["first_seat_id"]
        ann = signed_in(http, "ann")  # chalice local's own POST /dev/token
        url = f"/performances/{performance['performance_id']}/bookings"
        anonymous = http.post(url, json={"seat_ids": [seat]})
        assert anonymous.status_code == 401, anonymous.text
        booked = http.post(url, json={"seat_ids": [seat]}, headers=ann)
        assert booked.status_code == 202, booked.text
        drain()  # chalice local fires no SQS triggers; the local poller delivers to the same handler
        read = http.get(f"/bookings/{booked.json()['booking_id']}", headers=ann)
        assert read.status_code == 200, read.text
        booking = conforms(read, "/bookings/{booking_id}", "get")
        assert (booking["status"], booking["user_id"]) == ("CONFIRMED", "ann")
        assert http.get("/openapi.json").status_code == 200
