"""Helpers of the end-to-end tests that talk to the real HTTP server (tests/support/app_stack.py)."""

from __future__ import annotations

import os
import time

import httpx
import jsonschema

from chalicelib import openapi
from tests.support.factories import event_body

ADMIN = {"X-Admin-Token": os.environ["ADMIN_TOKEN"]}


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


def wait_for_final(http: httpx.Client, booking_id: str, timeout: float = 20) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = conforms(http.get(f"/bookings/{booking_id}"), "/bookings/{booking_id}", "get")
        if body["status"] != "PENDING":
            return body
        time.sleep(0.1)
    raise AssertionError(f"booking {booking_id} still PENDING after {timeout} s")
