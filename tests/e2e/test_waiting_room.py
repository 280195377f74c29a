"""A waiting room over HTTP (docs/api.md#waiting-rooms): the admin creates it, users queue, read their
tickets until admitted, and book only with their admission token to that performance. The admission order
and rate to the millisecond are proven on an injected clock in tests/integration/test_waiting_room.py; here
the real server's clock runs, with a rate high enough that a turn comes at once."""

from __future__ import annotations

import time

import httpx
import pytest

from tests.support.app_stack import ON_MOTO
from tests.support.factories import event_body
from tests.support.http import ADMIN, conforms, error_code, signed_in

pytestmark = [pytest.mark.e2e, ON_MOTO]
QUEUE, TICKET = "/performances/{performance_id}/queue", "/performances/{performance_id}/queue/{ticket}"
BOOK = "/performances/{performance_id}/bookings"


def waiting_room_performance(http: httpx.Client, admit_per_second: int) -> dict:
    body = event_body(strategy="db_lock", rows=1, seats_per_row=10)
    body["performances"][0]["waiting_room"] = {"admit_per_second": admit_per_second}
    created = http.post("/admin/events", json=body, headers=ADMIN)
    assert created.status_code == 201, created.text
    performance = conforms(created, "/admin/events", "post")["performances"][0]
    assert performance["waiting_room"] == {"admit_per_second": admit_per_second}
    return performance


def admitted(http: httpx.Client, performance_id: int, ticket: str, user: dict[str, str]) -> dict:
    """The ticket once its turn has come (a rate of 1,000 a second: within a few ms of joining)."""
    deadline = time.monotonic() + 10
    while True:
        answer = http.get(TICKET.format(performance_id=performance_id, ticket=ticket), headers=user)
        body = conforms(answer, TICKET, "get")
        if body["admission_token"] or time.monotonic() > deadline:
            return body
        time.sleep(0.01)


def test_queue_then_book_with_the_admission_and_not_without(http: httpx.Client) -> None:
    performance = waiting_room_performance(http, admit_per_second=1000)
    pid, seat = performance["performance_id"], performance["sections"][0]["first_seat_id"]
    ann, bob = signed_in(http, "wr-ann"), signed_in(http, "wr-bob")
    joined = http.post(QUEUE.format(performance_id=pid), headers=ann)
    assert joined.status_code == 201
    ticket = conforms(joined, QUEUE, "post")
    again = http.post(QUEUE.format(performance_id=pid), headers=ann)
    assert again.status_code == 200 and again.json()["ticket"] == ticket["ticket"], "one ticket per user"
    assert http.post(QUEUE.format(performance_id=pid)).status_code == 401

    refused = http.post(BOOK.format(performance_id=pid), json={"seat_ids": [seat]}, headers=ann)
    assert refused.status_code == 403 and error_code(refused, BOOK, "post") == "ADMISSION_REQUIRED"

    admission = admitted(http, pid, ticket["ticket"], ann)
    assert admission["position"] == 0 and admission["admission_token"], admission
    other_user = http.get(TICKET.format(performance_id=pid, ticket=ticket["ticket"]), headers=bob)
    assert other_user.status_code == 404, "a ticket is its user's alone"
    with_admission = {**ann, "X-Admission-Token": admission["admission_token"]}
    as_bob = {**bob, "X-Admission-Token": admission["admission_token"]}
    refused = http.post(BOOK.format(performance_id=pid), json={"seat_ids": [seat]}, headers=as_bob)
    assert refused.status_code == 403, "ann's admission does not admit bob"
    booked = http.post(BOOK.format(performance_id=pid), json={"seat_ids": [seat]}, headers=with_admission)
    assert booked.status_code == 201, booked.text
    booking_id = booked.json()["booking_id"]
    assert http.delete(f"/bookings/{booking_id}", headers=ann).status_code == 403, "a cancel is a write too"
    assert http.delete(f"/bookings/{booking_id}", headers=with_admission).status_code == 200


def test_an_admission_to_one_performance_is_refused_on_another(http: httpx.Client) -> None:
    first = waiting_room_performance(http, admit_per_second=1000)
    second = waiting_room_performance(http, admit_per_second=1000)
    ann = signed_in(http, "wr-carol")
    ticket = conforms(
        http.post(QUEUE.format(performance_id=first["performance_id"]), headers=ann), QUEUE, "post"
    )
    admission = admitted(http, first["performance_id"], ticket["ticket"], ann)["admission_token"]
    seat = second["sections"][0]["first_seat_id"]
    refused = http.post(
        BOOK.format(performance_id=second["performance_id"]),
        json={"seat_ids": [seat]},
        headers={**ann, "X-Admission-Token": admission},
    )
    assert refused.status_code == 403 and error_code(refused, BOOK, "post") == "ADMISSION_REQUIRED"


def test_a_performance_without_a_waiting_room_has_no_queue_and_needs_no_admission(http: httpx.Client) -> None:
    created = http.post("/admin/events", json=event_body(strategy="db_lock"), headers=ADMIN)
    performance = conforms(created, "/admin/events", "post")["performances"][0]
    assert performance["waiting_room"] is None
    ann = signed_in(http, "wr-dave")
    missing = http.post(QUEUE.format(**performance), headers=ann)
    assert missing.status_code == 404 and error_code(missing, QUEUE, "post") == "NOT_FOUND"
    seat = performance["sections"][0]["first_seat_id"]
    assert http.post(BOOK.format(**performance), json={"seat_ids": [seat]}, headers=ann).status_code == 201
