"""Helpers of the end-to-end tests that talk to the real HTTP server (tests/support/app_stack.py)."""

from __future__ import annotations

import functools
import os
import time

import httpx
import jsonschema
import jwt

from chalicelib import openapi
from chalicelib.adapters.tokens import ACCESS, ISSUER
from tests.support.factories import event_body

ADMIN = {"X-Admin-Token": os.environ["ADMIN_TOKEN"]}
# The key the app's processes sign and verify users' tokens with (tests/conftest.py).
SIGNING_KEY = os.environ["TOKEN_SIGNING_KEY"]


@functools.cache
def _token(base_url: str, user_id: str) -> str:
    response = httpx.post(f"{base_url}/dev/token", json={"user_id": user_id}, timeout=10)
    assert response.status_code == 201, response.text
    return conforms(response, "/dev/token", "post")["token"]


def signed_in(http: httpx.Client, user_id: str) -> dict[str, str]:
    """The headers of a request made by `user_id`: the local stage's sign-in (POST /dev/token), once per
    user and server."""
    return {"Authorization": f"Bearer {_token(str(http.base_url).rstrip('/'), user_id)}"}


def made_token(
    user_id: str,
    *,
    key: str | None = SIGNING_KEY,
    algorithm: str = "HS256",
    expires_in: float = 3600,
    **claims: object,
) -> str:
    """A user token made here, its claims shaped as chalicelib.adapters.tokens signs them: with the app's key,
    HS256 and a future exp it is as good as POST /dev/token's, so one that differs in one of them alone (a
    forged key, `alg: none`, a past exp) is refused for that alone. `claims` add or replace claims."""
    now = int(time.time())
    payload = {"iss": ISSUER, "sub": user_id, "token_use": ACCESS, "iat": now, "exp": now + int(expires_in)}
    return jwt.encode({**payload, **claims}, key, algorithm=algorithm)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def conforms(response: httpx.Response, path: str, method: str) -> dict:
    """The body, after checking it against the OpenAPI document's schema for this status."""
    body = response.json()
    jsonschema.validate(body, openapi.response_schema(path, method, response.status_code))
    return body


def error_code(response: httpx.Response, path: str, method: str) -> str:
    return conforms(response, path, method)["error"]["code"]


def create_performance(http: httpx.Client, **kwargs) -> dict:
    response = http.post("/admin/events", json=event_body(**kwargs), headers=ADMIN)
    assert response.status_code == 201, response.text
    return conforms(response, "/admin/events", "post")["performances"][0]


def wait_for_seats(
    http: httpx.Client, performance_id: int, wanted: dict[int, str], timeout: float = 20
) -> dict:
    """The seat map once it shows `wanted` (seat -> status), or at the timeout: a consumer settles MySQL first
    and the map a moment later, so a booking may read final while the map still shows its hold (api.md: the
    map agrees with the database once the queues have drained)."""
    deadline = time.monotonic() + timeout
    while True:
        path = "/performances/{performance_id}/seats"
        seats = conforms(http.get(f"/performances/{performance_id}/seats"), path, "get")
        statuses = {s["seat_id"]: s["status"] for section in seats["sections"] for s in section["seats"]}
        if all(statuses[seat] == status for seat, status in wanted.items()) or time.monotonic() > deadline:
            return seats
        time.sleep(0.1)


def wait_for_final(http: httpx.Client, booking_id: str, user_id: str, timeout: float = 20) -> dict:
    """`user_id`'s booking once it is no longer PENDING (only its owner may read it)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        response = http.get(f"/bookings/{booking_id}", headers=signed_in(http, user_id))
        assert response.status_code == 200, response.text
        body = conforms(response, "/bookings/{booking_id}", "get")
        if body["status"] != "PENDING":
            return body
        time.sleep(0.1)
    raise AssertionError(f"booking {booking_id} still PENDING after {timeout} s")
