"""The OpenAPI document cannot drift from the app: same routes, valid document, schemas that accept the
answers the contract describes and refuse wrong ones. Swagger UI assets are served from the package only."""

from __future__ import annotations

import jsonschema
import pytest
from openapi_spec_validator import validate

import app as app_module
from chalicelib import openapi, swagger_ui
from chalicelib.domain.errors import BookingError, InvalidRequest
from chalicelib.domain.validation import parse_booking_body, parse_event_spec
from tests.unit.test_validation import GOOD_EVENT

BOOKING = {
    "booking_id": "01JD0000000000000000000000",
    "performance_id": 1,
    "user_id": "ann",
    "seat_ids": [1, 2],
    "status": "PENDING",
    "strategy": "redis_async",
    "reason": None,
    "expires_at": None,
    "extensions": 0,
    "payment_reference": None,
}


def test_the_document_is_valid_openapi() -> None:
    validate(openapi.build_openapi_document(4))


def test_documented_routes_are_exactly_the_apps_routes() -> None:
    served = {(method, path) for path, methods in app_module.app.routes.items() for method in methods}
    assert served == openapi.ROUTES


def test_every_domain_error_code_is_documented() -> None:
    codes = {cls.code for cls in BookingError.__subclasses__()}
    assert codes <= set(openapi.ERROR_CODES)
    assert {
        "SEAT_UNAVAILABLE",
        "IDEMPOTENCY_KEY_REUSED",
        "IDEMPOTENCY_IN_PROGRESS",
        "NOT_CANCELLABLE",
    } <= codes


@pytest.mark.parametrize(
    ("path", "method", "status", "good", "bad"),
    [
        ("/performances/{performance_id}/bookings", "post", 202, BOOKING, {**BOOKING, "status": "BOGUS"}),
        (
            "/performances/{performance_id}/bookings",
            "post",
            201,
            {**BOOKING, "status": "CONFIRMED"},
            {k: v for k, v in BOOKING.items() if k != "booking_id"},
        ),
        (
            "/performances/{performance_id}/bookings",
            "post",
            409,
            {"error": {"code": "SEAT_UNAVAILABLE", "message": "taken", "seat_ids": [2]}},
            {"error": {"code": "TAKEN", "message": "taken"}},
        ),
        (
            "/bookings/{booking_id}",
            "get",
            200,
            {**BOOKING, "status": "FAILED", "reason": "queue down"},
            {**BOOKING, "seat_ids": [0]},
        ),
        (
            "/events",
            "get",
            200,
            {"events": [{"event_id": 1, "name": "A", "venue": "B"}], "next_cursor": None},
            {"events": [], "next_cursor": 5},
        ),
        (
            "/performances/{performance_id}/seats",
            "get",
            200,
            {
                "performance_id": 1,
                "strategy": "redis_async",
                "version": 3,
                "sections": [
                    {
                        "section_id": 1,
                        "name": "VIP",
                        "price": 10,
                        "available": 1,
                        "seats": [{"seat_id": 1, "row": 1, "number": 1, "status": "AVAILABLE"}],
                    }
                ],
            },
            {
                "performance_id": 1,
                "strategy": "redis_async",
                "version": 3,
                "sections": [
                    {
                        "section_id": 1,
                        "name": "VIP",
                        "price": 10,
                        "available": 1,
                        "seats": [{"seat_id": 1, "row": 1, "number": 1, "status": "SOLD"}],
                    }
                ],
            },
        ),
        (
            "/performances/{performance_id}/seats",
            "get",
            200,
            {
                "performance_id": 1,
                "strategy": "db_lock",
                "version": 3,
                "sections": [
                    {
                        "section_id": 1,
                        "name": "VIP",
                        "price": 10,
                        "rows": 1,
                        "seats_per_row": 3,
                        "first_seat_id": 1,
                        "status": "AHB",
                    }
                ],
            },
            {
                "performance_id": 1,
                "strategy": "db_lock",
                "version": 3,
                "sections": [
                    {
                        "section_id": 1,
                        "name": "VIP",
                        "price": 10,
                        "rows": 1,
                        "seats_per_row": 3,
                        "first_seat_id": 1,
                        "status": "AHX",
                    }
                ],
            },
        ),
        (
            "/health",
            "get",
            503,
            {"status": "degraded", "checks": {"db": "ok", "redis": "unavailable", "queue": "ok"}},
            {"status": "bad", "checks": {}},
        ),
    ],
)
def test_response_schemas_accept_the_contract_and_refuse_the_rest(path, method, status, good, bad) -> None:
    schema = openapi.response_schema(path, method, status)
    jsonschema.validate(good, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, schema)


def test_limits_come_from_the_code() -> None:
    schema = openapi.build_openapi_document(6)["components"]["schemas"]["BookingRequest"]
    assert schema["properties"]["seat_ids"]["maxItems"] == 6


@pytest.mark.parametrize(
    "name", ["../app.py", "..%2Fapp.py", "/etc/passwd", "swagger-ui.js.map", "index.html", ""]
)
def test_swagger_assets_are_a_whitelist(name: str) -> None:
    assert swagger_ui.asset(name) is None


def test_swagger_page_and_assets_are_local() -> None:
    page = swagger_ui.docs_page_html()
    assert "http://" not in page and "https://" not in page
    css, css_type = swagger_ui.asset("swagger-ui.css")
    js, js_type = swagger_ui.asset("swagger-ui-bundle.js")
    png, png_type = swagger_ui.asset("favicon-32x32.png")
    assert css_type.startswith("text/css") and ".swagger-ui" in css
    assert js_type.startswith("application/javascript") and len(js) > 100_000
    assert png_type == "image/png" and png.startswith(b"\x89PNG")


def _request_schema(name: str, max_seats: int = 4) -> dict:
    document = openapi.build_openapi_document(max_seats)
    return openapi.as_json_schema({**openapi.ref(name), "components": document["components"]})


@pytest.mark.parametrize(
    "body",
    [
        {"user_id": "ann", "seat_ids": [3, 1]},
        {"user_id": "ann", "seat_ids": [1], "extra": 1},
        {"user_id": "ann", "seat_ids": [0]},
        {"user_id": "ann", "seat_ids": [1, 1]},
        {"user_id": "ann", "seat_ids": [1, 2, 3, 4, 5]},
        {"user_id": "a" * 65, "seat_ids": [1]},
        {"user_id": "ann", "seat_ids": [True]},
        {"seat_ids": [1]},
    ],
)
def test_the_documented_booking_body_is_the_one_the_service_accepts(body: dict) -> None:
    # The schema is generated from the model the service parses with: both say yes or both say no (for the
    # signed-in ann, as over HTTP: the body's user_id may be left out).
    try:
        parse_booking_body(body, 4, caller="ann")
        accepted = True
    except InvalidRequest:
        accepted = False
    assert jsonschema.Draft202012Validator(_request_schema("BookingRequest")).is_valid(body) == accepted


def test_the_documented_event_body_is_the_one_the_service_accepts() -> None:
    schema = _request_schema("CreateEvent")
    jsonschema.validate(GOOD_EVENT, schema)
    for change in ({"sections": [{**GOOD_EVENT["sections"][0], "price": 10**13}]}, {"performances": []}):
        with pytest.raises(InvalidRequest):
            parse_event_spec({**GOOD_EVENT, **change}, "db_lock")
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate({**GOOD_EVENT, **change}, schema)
