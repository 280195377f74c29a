"""The HTTP contract (docs/api.md) end to end: the production serving mode (Chalice behind granian) and
the worker run as separate processes (tests/support/app_stack.py), exactly as `make run` starts them,
against the test MariaDB, Redis and each emulator. Every JSON answer is also validated against the OpenAPI
document the app serves."""

from __future__ import annotations

import dataclasses
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable

import httpx
import pytest

from chalicelib import openapi
from chalicelib.conditional import SEAT_MAP_CACHE_CONTROL
from tests.support.app_stack import ON_BOTH_EMULATORS
from tests.support.factories import event_body
from tests.support.http import (
    ADMIN,
    bearer,
    conforms,
    create_performance,
    error_code,
    made_token,
    signed_in,
    wait_for_final,
    wait_for_seats,
)
from tests.support.processes import Worker

# Bookings flow through the emulator's queues and streams, where moto and LocalStack differ: both.
pytestmark = [pytest.mark.e2e, ON_BOTH_EMULATORS]


def test_health_reports_every_dependency(http: httpx.Client) -> None:
    response = http.get("/health")
    assert response.status_code == 200
    assert conforms(response, "/health", "get") == {
        "status": "ok",
        "checks": {"db": "ok", "redis": "ok", "queue": "ok"},
    }


def test_admin_events_need_the_token_and_valid_input(http: httpx.Client, sql) -> None:
    before = sql("SELECT COUNT(*) FROM events")
    assert (
        error_code(http.post("/admin/events", json=event_body()), "/admin/events", "post") == "UNAUTHORIZED"
    )
    wrong = http.post("/admin/events", json=event_body(), headers={"X-Admin-Token": "guess"})
    assert wrong.status_code == 401
    bad = http.post("/admin/events", json={**event_body(), "sections": []}, headers=ADMIN)
    assert bad.status_code == 400 and error_code(bad, "/admin/events", "post") == "INVALID_REQUEST"
    not_json = http.post(
        "/admin/events", content=b"{oops", headers={**ADMIN, "Content-Type": "application/json"}
    )
    assert not_json.status_code == 400
    assert sql("SELECT COUNT(*) FROM events") == before, "refused requests created nothing"


def test_events_are_listed_page_by_page_and_read_back(http: httpx.Client) -> None:
    created = [http.post("/admin/events", json=event_body(), headers=ADMIN).json() for _ in range(3)]
    seen, cursor = [], None
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = conforms(http.get("/events", params=params), "/events", "get")
        seen += [e["event_id"] for e in page["events"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert {e["event_id"] for e in created} <= set(seen)
    assert seen == sorted(seen) and len(seen) == len(set(seen))

    event = conforms(http.get(f"/events/{created[0]['event_id']}"), "/events/{event_id}", "get")
    assert event == created[0]
    section = event["performances"][0]["sections"][0]
    assert section["seat_count"] == section["last_seat_id"] - section["first_seat_id"] + 1 == 10
    assert http.get("/events/999999999").status_code == 404
    assert http.get("/events/abc").status_code == 404
    assert http.get("/events", params={"limit": 0}).status_code == 400
    assert http.get("/events", params={"cursor": "garbage!"}).status_code == 400


def test_a_booking_over_http_from_202_to_confirmed_to_cancelled(http: httpx.Client) -> None:
    performance = create_performance(http)
    pid, seat = performance["performance_id"], performance["sections"][0]["first_seat_id"]
    path = "/performances/{performance_id}/bookings"

    ann, bob = signed_in(http, "ann"), signed_in(http, "bob")

    accepted = http.post(f"/performances/{pid}/bookings", json={"seat_ids": [seat, seat + 1]}, headers=ann)
    assert accepted.status_code == 202, accepted.text
    booking = conforms(accepted, path, "post")
    assert booking["status"] == "PENDING" and booking["strategy"] == "redis_async"
    assert booking["user_id"] == "ann", "the token's user booked"
    assert accepted.headers["Location"] == f"/bookings/{booking['booking_id']}"

    taken = http.post(f"/performances/{pid}/bookings", json={"seat_ids": [seat + 1, seat + 2]}, headers=bob)
    assert taken.status_code == 409
    assert conforms(taken, path, "post")["error"] == {
        "code": "SEAT_UNAVAILABLE",
        "message": taken.json()["error"]["message"],
        "seat_ids": [seat + 1],
    }

    assert wait_for_final(http, booking["booking_id"], "ann")["status"] == "CONFIRMED"
    seats = wait_for_seats(http, pid, {seat: "BOOKED", seat + 1: "BOOKED"})
    statuses = {s["seat_id"]: s["status"] for s in seats["sections"][0]["seats"]}
    assert statuses[seat] == statuses[seat + 1] == "BOOKED" and statuses[seat + 2] == "AVAILABLE"
    assert seats["sections"][0]["available"] == 8

    cancel_path = "/bookings/{booking_id}"
    # Someone else's booking is one that does not exist, as far as bob can tell.
    wrong = http.delete(f"/bookings/{booking['booking_id']}", headers=bob)
    assert wrong.status_code == 404 and error_code(wrong, cancel_path, "delete") == "NOT_FOUND"
    cancelled = http.delete(f"/bookings/{booking['booking_id']}", headers=ann)
    assert (
        cancelled.status_code == 200 and conforms(cancelled, cancel_path, "delete")["status"] == "CANCELLED"
    )
    again = http.delete(f"/bookings/{booking['booking_id']}", headers=ann)
    assert again.status_code == 409 and error_code(again, cancel_path, "delete") == "NOT_CANCELLABLE"
    after = http.get(f"/performances/{pid}/seats").json()
    assert after["sections"][0]["available"] == 10


@pytest.mark.parametrize("strategy", ["fifo_partition", "stream_state"])
def test_in_line_strategies_over_http_first_in_line_wins_and_a_cancel_frees_the_seat(
    http: httpx.Client, worker: Worker, strategy: str
) -> None:
    performance = create_performance(http, strategy=strategy)
    pid, seat = performance["performance_id"], performance["sections"][0]["first_seat_id"]
    bookings_path = f"/performances/{pid}/bookings"

    def request(user: str, seats: list[int]) -> dict:
        response = http.post(bookings_path, json={"seat_ids": seats}, headers=signed_in(http, user))
        assert response.status_code == 202, response.text  # both wait in line: nothing decided yet
        body = conforms(response, "/performances/{performance_id}/bookings", "post")
        assert body["status"] == "PENDING" and body["strategy"] == strategy
        return body

    # Paused, the worker cannot decide ann's booking before bob's request is in line behind it (were it
    # decided, the seat map would already show the seat taken and bob would get a 409 at the door).
    with worker.paused():
        first, second = request("ann", [seat, seat + 1]), request("bob", [seat + 1])
    assert wait_for_final(http, first["booking_id"], "ann")["status"] == "CONFIRMED"
    refused = wait_for_final(http, second["booking_id"], "bob")
    assert refused["status"] == "REJECTED" and str(seat + 1) in refused["reason"]
    taken = http.post(bookings_path, json={"seat_ids": [seat]}, headers=signed_in(http, "cid"))
    assert taken.status_code == 409, "the seat map already knows: no need to stand in line"

    cancelled = http.delete(f"/bookings/{first['booking_id']}", headers=signed_in(http, "ann"))
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "CANCELLED"
    # The seat is free in MySQL, the map and (stream_state) the processor's ledger: a new request wins it.
    again = request("dan", [seat + 1])
    assert wait_for_final(http, again["booking_id"], "dan")["status"] == "CONFIRMED"


def test_idempotency_keys_over_http(http: httpx.Client) -> None:
    performance = create_performance(http)
    pid, seat = performance["performance_id"], performance["sections"][0]["first_seat_id"]
    ann = signed_in(http, "ann")
    key = {"Idempotency-Key": f"k-{uuid.uuid4()}", **ann}
    body = {"seat_ids": [seat]}

    first = http.post(f"/performances/{pid}/bookings", json=body, headers=key)
    replay = http.post(f"/performances/{pid}/bookings", json=body, headers=key)
    assert first.status_code == replay.status_code == 202
    assert replay.json() == first.json()
    # Naming oneself in the body is the same request: the user is who the token says either way.
    named = http.post(f"/performances/{pid}/bookings", json={**body, "user_id": "ann"}, headers=key)
    assert (named.status_code, named.json()) == (202, first.json())

    reused = http.post(f"/performances/{pid}/bookings", json={**body, "seat_ids": [seat + 1]}, headers=key)
    assert reused.status_code == 422
    assert error_code(reused, "/performances/{performance_id}/bookings", "post") == "IDEMPOTENCY_KEY_REUSED"
    too_long = http.post(
        f"/performances/{pid}/bookings", json=body, headers={**ann, "Idempotency-Key": "x" * 129}
    )
    assert too_long.status_code == 400


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"user_id": "ann", "seat_ids": []}, 400),
        ({"user_id": "ann", "seat_ids": [1, 1]}, 400),
        ({"user_id": "ann", "seat_ids": [1, 2, 3, 4, 5]}, 400),
        ({"user_id": "", "seat_ids": [1]}, 400),
        ({"user_id": "ann"}, 400),
        ({"user_id": "ann", "seat_ids": [999999999]}, 404),
    ],
)
def test_bad_booking_requests_get_the_contract_error_and_change_nothing(
    http: httpx.Client, body, status
) -> None:
    performance = create_performance(http)
    pid = performance["performance_id"]
    response = http.post(f"/performances/{pid}/bookings", json=body, headers=signed_in(http, "ann"))
    assert response.status_code == status
    expected = "INVALID_REQUEST" if status == 400 else "NOT_FOUND"
    assert error_code(response, "/performances/{performance_id}/bookings", "post") == expected
    assert http.get(f"/performances/{pid}/seats").json()["sections"][0]["available"] == 10


def test_the_seat_map_over_the_real_server_gzip_compact_and_cache_headers(http: httpx.Client) -> None:
    """Issue 15: the prepared bytes through granian and the WSGI adapter (base64 gzip decoded on the way)."""
    performance = create_performance(http, strategy="db_lock")
    pid, seat = performance["performance_id"], performance["sections"][0]["first_seat_id"]
    booked = http.post(
        f"/performances/{pid}/bookings", json={"seat_ids": [seat]}, headers=signed_in(http, "ann")
    )
    assert booked.status_code == 201, booked.text
    path, schema_path = f"/performances/{pid}/seats", "/performances/{performance_id}/seats"

    plain = http.get(path, headers={"Accept-Encoding": "identity"})
    gzipped = http.get(path, headers={"Accept-Encoding": "gzip"})
    assert "content-encoding" not in plain.headers and gzipped.headers["content-encoding"] == "gzip"
    assert conforms(gzipped, schema_path, "get") == conforms(plain, schema_path, "get")  # httpx gunzips
    assert int(gzipped.headers["content-length"]) < int(plain.headers["content-length"]) == len(plain.content)
    for answer in (plain, gzipped):
        assert answer.headers["vary"] == "Accept-Encoding"
        assert answer.headers["cache-control"] == SEAT_MAP_CACHE_CONTROL
    assert gzipped.headers["etag"] == plain.headers["etag"].removesuffix('"') + '-gzip"'

    compact = http.get(path, params={"view": "compact"}, headers={"Accept-Encoding": "gzip"})
    body = conforms(compact, schema_path, "get")
    assert body["version"] == plain.json()["version"]
    assert body["sections"][0]["status"] == "B" + "A" * 9
    again = http.get(
        path,
        params={"view": "compact"},
        headers={"Accept-Encoding": "gzip", "If-None-Match": compact.headers["etag"]},
    )
    assert again.status_code == 304 and again.content == b""

    refused = http.get(path, params={"view": "everything"})
    assert refused.status_code == 400 and error_code(refused, schema_path, "get") == "INVALID_REQUEST"


def test_unknown_things_are_404(http: httpx.Client) -> None:
    user = signed_in(http, "a")
    assert http.get("/performances/999999999/seats").status_code == 404
    assert (
        http.post("/performances/999999999/bookings", json={"seat_ids": [1]}, headers=user).status_code == 404
    )
    assert http.get("/bookings/NOSUCHBOOKING", headers=user).status_code == 404
    assert http.delete("/bookings/NOSUCHBOOKING", headers=user).status_code == 404
    assert http.get("/no/such/route").status_code == 404


def test_the_api_documents_itself_offline(http: httpx.Client) -> None:
    from openapi_spec_validator import validate

    document = http.get("/openapi.json").json()
    validate(document)
    page = http.get("/docs")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert "https://" not in page.text and "http://" not in page.text
    asset = http.get("/docs/assets/swagger-ui-bundle.js")
    assert asset.status_code == 200 and len(asset.content) > 100_000
    assert http.get("/docs/assets/..%2Fapp.py").status_code == 404


def test_300_concurrent_http_requests_for_one_seat_one_wins(http: httpx.Client, base_url: str, sql) -> None:
    performance = create_performance(http)
    pid, seat = performance["performance_id"], performance["sections"][0]["first_seat_id"]
    statuses: list[int] = []
    barrier = threading.Barrier(300)
    lock = threading.Lock()
    # Signed in beforehand: the race is for the seat, not for POST /dev/token.
    users = [signed_in(http, f"u{i}") for i in range(300)]

    def attempt(i: int) -> None:
        with httpx.Client(base_url=base_url, timeout=30) as client:
            barrier.wait()
            response = client.post(
                f"/performances/{pid}/bookings", json={"seat_ids": [seat]}, headers=users[i]
            )
        with lock:
            statuses.append(response.status_code)

    threads = [threading.Thread(target=attempt, args=(i,)) for i in range(300)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    print(f"\nHTTP hot seat, 300 clients: {time.perf_counter() - started:.2f} s, {dict(Counter(statuses))}")

    assert Counter(statuses) == {202: 1, 409: 299}
    # Journaled PENDING before its 202; the worker confirms it in the background.
    deadline = time.monotonic() + 20
    while sql("SELECT status FROM bookings WHERE performance_id = %s", pid) == [("PENDING",)]:
        assert time.monotonic() < deadline, "the accepted booking was not confirmed"
        time.sleep(0.2)
    assert sql("SELECT status FROM bookings WHERE performance_id = %s", pid) == [("CONFIRMED",)]


def test_a_hold_over_http_best_available_confirm_extend_and_the_limit(http: httpx.Client) -> None:
    """The hold routes as a client calls them, every answer checked against the OpenAPI document."""
    performance = create_performance(http, strategy="db_lock", rows=4, seats_per_row=5)
    pid, section = performance["performance_id"], performance["sections"][0]
    path = "/performances/{performance_id}/bookings"
    confirm_path, extend_path = "/bookings/{booking_id}/confirm", "/bookings/{booking_id}/extend"
    owner = signed_in(http, "ann")
    wanted = {"section_id": section["section_id"], "count": 3, "hold": True}

    held = http.post(f"/performances/{pid}/bookings", json=wanted, headers=owner)
    assert held.status_code == 201, held.text
    hold = conforms(held, path, "post")
    first = section["first_seat_id"]
    assert hold["status"] == "HELD" and hold["seat_ids"] == [first, first + 1, first + 2]
    assert hold["expires_at"].endswith("Z") and hold["extensions"] == 0
    bid = hold["booking_id"]
    assert conforms(http.get(f"/bookings/{bid}", headers=owner), "/bookings/{booking_id}", "get") == hold

    anonymous = http.post(f"/bookings/{bid}/confirm", json={"payment_reference": "p"})
    assert anonymous.status_code == 401 and error_code(anonymous, confirm_path, "post") == "UNAUTHORIZED"
    stranger = http.post(f"/bookings/{bid}/extend", headers=signed_in(http, "mallory"))
    assert stranger.status_code == 404 and error_code(stranger, extend_path, "post") == "NOT_FOUND"
    bad = http.post(f"/bookings/{bid}/confirm", json={"payment_reference": ""}, headers=owner)
    assert bad.status_code == 400 and error_code(bad, confirm_path, "post") == "INVALID_REQUEST"

    extended = http.post(f"/bookings/{bid}/extend", headers=owner)
    assert extended.status_code == 200
    assert conforms(extended, extend_path, "post")["extensions"] == 1
    confirmed = http.post(f"/bookings/{bid}/confirm", json={"payment_reference": "pay-7"}, headers=owner)
    assert confirmed.status_code == 200
    assert conforms(confirmed, confirm_path, "post")["status"] == "CONFIRMED"
    again = http.post(f"/bookings/{bid}/confirm", json={"payment_reference": "pay-7"}, headers=owner)
    assert again.status_code == 200 and again.json() == confirmed.json()
    late = http.post(f"/bookings/{bid}/extend", headers=owner)
    assert late.status_code == 409 and error_code(late, extend_path, "post") == "NOT_EXTENDABLE"
    bob = signed_in(http, "bob")
    purchase = http.post(f"/performances/{pid}/bookings", json={"seat_ids": [first + 5]}, headers=bob)
    not_held = http.post(
        f"/bookings/{purchase.json()['booking_id']}/confirm", json={"payment_reference": "x"}, headers=bob
    )
    assert not_held.status_code == 409 and error_code(not_held, confirm_path, "post") == "NOT_CONFIRMABLE"

    # The limit per person: ann holds 3; 8 is the default limit, so 4 + 4 more is one seat too many.
    four = {"section_id": section["section_id"], "count": 4}
    assert http.post(f"/performances/{pid}/bookings", json=four, headers=owner).status_code == 201
    over = http.post(f"/performances/{pid}/bookings", json=four, headers=owner)
    assert over.status_code == 409 and error_code(over, path, "post") == "USER_LIMIT"
    assert over.json()["error"]["remaining"] == 1

    both = http.post(f"/performances/{pid}/bookings", json={**four, "seat_ids": [first]}, headers=owner)
    assert both.status_code == 400 and error_code(both, path, "post") == "INVALID_REQUEST"
    unknown = http.post(
        f"/performances/{pid}/bookings", json={**four, "section_id": 999_999_999}, headers=owner
    )
    assert unknown.status_code == 404 and error_code(unknown, path, "post") == "NOT_FOUND"


# --- identity: every signed-in route without a token, with an expired, forged or another user's -------------
BOOKINGS, BOOKING = "/performances/{performance_id}/bookings", "/bookings/{booking_id}"
BAD_CREDENTIALS: dict[str, Callable[[], dict[str, str]]] = {
    "no-token": dict,
    "expired": lambda: bearer(made_token("ann", expires_in=-60)),
    "forged": lambda: bearer(made_token("ann", key="wrong-key-not-the-apps-0123456789abcdef")),
}


@dataclasses.dataclass(frozen=True)
class Call:
    """One request to a signed-in route that ann, signed in, would make with success."""

    method: str
    url: str
    route: str  # its path in the OpenAPI document
    json: dict | None = None

    def send(self, http: httpx.Client, headers: dict[str, str]) -> httpx.Response:
        return http.request(self.method, self.url, json=self.json, headers=headers)


@dataclasses.dataclass(frozen=True)
class Hold:
    pid: int
    free_seat: int
    booking: dict  # ann's HELD booking of one seat of performance pid, as its 201 answered it

    def calls(self, booking_id: str | None = None) -> list[Call]:
        """The five signed-in routes: a booking of the free seat, then the four of one booking (ann's hold,
        or `booking_id`)."""
        bid = booking_id or self.booking["booking_id"]
        pay = {"payment_reference": "pay-1"}
        return [
            Call("POST", f"/performances/{self.pid}/bookings", BOOKINGS, {"seat_ids": [self.free_seat]}),
            Call("GET", f"/bookings/{bid}", BOOKING),
            Call("DELETE", f"/bookings/{bid}", BOOKING),
            Call("POST", f"/bookings/{bid}/confirm", "/bookings/{booking_id}/confirm", pay),
            Call("POST", f"/bookings/{bid}/extend", "/bookings/{booking_id}/extend"),
        ]


@pytest.fixture()
def anns_hold(http: httpx.Client) -> Hold:
    # db_lock decides at once: a refused request that had booked anything would show in MySQL straight away.
    performance = create_performance(http, strategy="db_lock")
    pid, first = performance["performance_id"], performance["sections"][0]["first_seat_id"]
    held = http.post(
        f"/performances/{pid}/bookings",
        json={"seat_ids": [first], "hold": True},
        headers=signed_in(http, "ann"),
    )
    assert held.status_code == 201, held.text
    return Hold(pid, first + 1, conforms(held, BOOKINGS, "post"))


def assert_untouched(http: httpx.Client, sql, hold: Hold) -> None:
    """ann's hold is as it was (not cancelled, confirmed nor extended) and nothing else was booked."""
    bid = hold.booking["booking_id"]
    now = http.get(f"/bookings/{bid}", headers=signed_in(http, "ann"))
    assert now.status_code == 200 and conforms(now, BOOKING, "get") == hold.booking
    assert sql("SELECT booking_id, status FROM bookings WHERE performance_id = %s", hold.pid) == [
        (bid, "HELD")
    ]


@pytest.mark.parametrize("credentials", BAD_CREDENTIALS.values(), ids=BAD_CREDENTIALS.keys())
def test_every_signed_in_route_refuses_no_token_an_expired_or_a_forged_one(
    http: httpx.Client, sql, anns_hold: Hold, credentials: Callable[[], dict[str, str]]
) -> None:
    calls = anns_hold.calls()
    # Exactly the booking routes the OpenAPI document marks signed-in (those Cognito guards in AWS): a new
    # one cannot be missed. (A waiting room's queue routes are signed in too; they have tests of their own.)
    booking_routes = {route for route in openapi.SIGNED_IN_ROUTES if "booking" in route[1]}
    assert {(call.method, call.route) for call in calls} == booking_routes
    for call in calls:
        response = call.send(http, credentials())
        assert response.status_code == 401, (call, response.text)
        assert error_code(response, call.route, call.method.lower()) == "UNAUTHORIZED"
    assert_untouched(http, sql, anns_hold)
    # The control: made the same way, with the app's key and a future exp, the token is ann's. So the
    # refused ones were refused for their key or their exp alone.
    mine = http.get(f"/bookings/{anns_hold.booking['booking_id']}", headers=bearer(made_token("ann")))
    assert mine.status_code == 200, mine.text


def test_another_users_token_finds_no_booking_exactly_as_an_unknown_id_does(
    http: httpx.Client, sql, anns_hold: Hold
) -> None:
    bob, bid = signed_in(http, "bob"), anns_hold.booking["booking_id"]
    unknown = "0" * len(bid)  # well formed, never minted: the message of a malformed id is another
    for anns, nobodys in zip(anns_hold.calls()[1:], anns_hold.calls(unknown)[1:], strict=True):
        answer, baseline = anns.send(http, bob), nobodys.send(http, bob)
        assert (answer.status_code, baseline.status_code) == (404, 404), (anns, answer.text)
        assert error_code(answer, anns.route, anns.method.lower()) == "NOT_FOUND"
        # The same answer but for the id: nothing tells bob that ann's booking exists.
        assert answer.text.replace(bid, unknown) == baseline.text
    assert_untouched(http, sql, anns_hold)


def test_a_body_user_id_must_be_the_tokens_and_may_be_left_out(http: httpx.Client, sql) -> None:
    performance = create_performance(http, strategy="db_lock")
    pid, seat = performance["performance_id"], performance["sections"][0]["first_seat_id"]
    url, ann = f"/performances/{pid}/bookings", signed_in(http, "ann")

    impostor = http.post(url, json={"user_id": "bob", "seat_ids": [seat]}, headers=ann)
    assert impostor.status_code == 403, impostor.text
    error = conforms(impostor, BOOKINGS, "post")["error"]
    assert (error["code"], error["field"]) == ("FORBIDDEN", "user_id")
    assert sql("SELECT COUNT(*) FROM bookings WHERE performance_id = %s", pid) == [(0,)], "nothing booked"
    seats = conforms(http.get(f"/performances/{pid}/seats"), "/performances/{performance_id}/seats", "get")
    assert seats["sections"][0]["available"] == 10

    booked = http.post(url, json={"seat_ids": [seat]}, headers=ann)
    assert booked.status_code == 201, booked.text
    booking = conforms(booked, BOOKINGS, "post")
    assert booking["user_id"] == "ann", "the token's sub booked"
    assert sql("SELECT user_id FROM bookings WHERE booking_id = %s", booking["booking_id"]) == [("ann",)]
