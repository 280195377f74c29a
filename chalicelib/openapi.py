"""The OpenAPI 3.0 document of the HTTP contract (docs/api.md). Its schemas are generated from the models of
the code (request bodies: chalicelib.domain.validation; answers: chalicelib.responses), so they cannot drift;
the paths below add what only prose can say. tests/unit/test_openapi.py checks it
against the app's routes, and the e2e tests validate every live answer against the schemas here."""

from __future__ import annotations

from functools import cache
from typing import Any

from pydantic.json_schema import models_json_schema

from chalicelib import responses
from chalicelib.conditional import SEAT_MAP_CACHE_CONTROL, SEAT_MAP_SHARED_SECONDS
from chalicelib.domain.seat_map import CHANGE_HISTORY
from chalicelib.domain.validation import (
    MAX_IDEMPOTENCY_KEY_LENGTH,
    ConfirmHold,
    CreateEvent,
    DevToken,
    booking_request_model,
)
from chalicelib.services.catalogue import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE
from chalicelib.services.seat_map_views import FULL, VIEWS

ERROR_CODES = responses.ERROR_CODES
REF = "#/components/schemas/{model}"
ID = {"type": "integer", "minimum": 1}


def schemas(max_seats: int) -> dict:
    models = (
        responses.Error,
        responses.Health,
        responses.Pong,
        CreateEvent,
        responses.Event,
        responses.EventList,
        responses.SeatMap,
        responses.CompactSeatMap,
        responses.SeatMapChanges,
        booking_request_model(max_seats),
        ConfirmHold,
        responses.booking_model(max_seats),
        DevToken,
        responses.Token,
        responses.QueueTicket,
    )
    _, document = models_json_schema([(model, "validation") for model in models], ref_template=REF)
    return {name: as_openapi_30(schema) for name, schema in document["$defs"].items()}


def as_openapi_30(node: Any) -> Any:
    """pydantic's JSON Schema -> OpenAPI 3.0's dialect (3.0 because the packaged Swagger UI, 4.x, does not
    render 3.1 documents): `nullable` instead of a type list, `enum` for `const`; no titles (the field names
    say it), no defaults (a default strategy is the deployment's, not the document's)."""
    if isinstance(node, list):
        return [as_openapi_30(item) for item in node]
    if not isinstance(node, dict):
        return node
    converted = {
        key: {name: as_openapi_30(schema) for name, schema in value.items()}
        if key == "properties"
        else as_openapi_30(value)
        for key, value in node.items()
        if key not in ("title", "default")
    }
    if "const" in converted:
        converted["enum"] = [converted.pop("const")]
    options = converted.get("anyOf", [])
    if len(options) == 2 and {"type": "null"} in options:
        del converted["anyOf"]
        value = next(o for o in options if o != {"type": "null"})
        # A $ref takes no siblings in 3.0: a nullable object is allOf its schema.
        value = {"allOf": [value]} if "$ref" in value else value
        converted = {**value, **converted, "nullable": True}
    return converted


def ref(name: str) -> dict:
    return {"$ref": REF.format(model=name)}


def json_content(schema: dict) -> dict:
    return {"content": {"application/json": {"schema": schema}}}


def answer(description: str, schema: dict | None = None, **extra: Any) -> dict:
    return {"description": description, **(json_content(schema) if schema else {}), **extra}


def body(name: str) -> dict:
    return {"required": True, **json_content(ref(name))}


def error(description: str) -> dict:
    return answer(description, ref("Error"))


def html(description: str) -> dict:
    return {"description": description, "content": {"text/html": {"schema": {"type": "string"}}}}


def header(name: str, description: str, required: bool = False, **schema: Any) -> dict:
    return {
        "name": name,
        "in": "header",
        "required": required,
        "description": description,
        "schema": {"type": "string", **schema},
    }


def in_path(name: str, schema: dict | None = None) -> dict:
    return {"name": name, "in": "path", "required": True, "schema": schema or {"type": "string"}}


def get(summary: str, responses_: dict, *parameters: dict, **extra: Any) -> dict:
    return {
        "get": {
            "summary": summary,
            **({"parameters": list(parameters)} if parameters else {}),
            **extra,
            "responses": responses_,
        }
    }


IDEMPOTENCY_KEY = header(
    "Idempotency-Key",
    "The user's own key (two users may send the same one; printable ASCII). A repeat with the same body "
    "replays the first answer from the idempotency record, kept IDEMPOTENCY_TTL_SECONDS (default 86400: "
    "24 h); once that is gone (expired, or lost with Redis) a repeat still returns the first booking, from "
    "MySQL, which keeps the key with it (the answer is then the booking as it is now), never a second "
    "booking. A key that made a booking stays bound to it: the same key with another body is 422, at any "
    "time.",
    minLength=1,
    maxLength=MAX_IDEMPOTENCY_KEY_LENGTH,
    pattern="^[ -~]+$",
)
UNAVAILABLE = error("SERVICE_UNAVAILABLE: a dependency is down; nothing was changed")
NOT_FOUND = error("NOT_FOUND")
# Every booking route: the caller is the signed-in user (docs/api.md#identity).
SIGNED_IN = [{"userToken": []}]
UNAUTHORIZED = {"401": error("UNAUTHORIZED: no `Authorization: Bearer <token>`, or a bad or expired one")}
ADMISSION_TOKEN = header(
    "X-Admission-Token",
    "a performance with a waiting room: the admission token its queue gave this user "
    "(GET .../queue/{ticket})",
)
ADMISSION_REQUIRED = {
    "403": error(
        "ADMISSION_REQUIRED: the performance has a waiting room and no valid X-Admission-Token of it for "
        "this user came (or FORBIDDEN: the body's user_id is not the signed-in user's)"
    )
}
NOT_YOURS = error("NOT_FOUND: no such booking, or another user's (the same answer: no hint it exists)")
# Every booking write (book, cancel, confirm, extend): the user's and the client address's token buckets.
RATE_LIMITED = {
    "429": answer(
        "RATE_LIMITED: this user (USER_RATE_LIMIT per USER_RATE_WINDOW_SECONDS) or this client address "
        "(ADDRESS_RATE_LIMIT per ADDRESS_RATE_WINDOW_SECONDS) spent its booking writes; `limit` says which, "
        "`retry_after_seconds` and the Retry-After header (whole seconds) when a token is back",
        ref("Error"),
        headers={"Retry-After": {"schema": {"type": "integer", "minimum": 1}, "description": "seconds"}},
    )
}
# Refused before the body is parsed (413: MAX_BODY_BYTES; 415: a Content-Type other than JSON).
BODY_REFUSED = {
    "413": error("PAYLOAD_TOO_LARGE: the body is over the size limit"),
    "415": error("UNSUPPORTED_MEDIA_TYPE: the body is not application/json"),
}
SEAT_MAP_VALIDATORS = {
    "ETag": {
        "schema": {"type": "string"},
        "description": 'W/"<performance_id>-<version>", then "-compact" for the compact view, '
        '"-since-<since>" for a delta, and "-gzip" when gzipped: one tag per representation',
    },
    "Cache-Control": {
        "schema": {"type": "string"},
        "description": f"{SEAT_MAP_CACHE_CONTROL}: a shared cache (CDN) may answer it for about a second, a "
        f"browser revalidates (If-None-Match). Staleness bound of a map: SEAT_MAP_CACHE_SECONDS (default 0) "
        f"+ SEAT_MAP_RENDER_SECONDS (default 0.25) at the origin, plus {SEAT_MAP_SHARED_SECONDS} s behind a "
        "shared cache; the same for deltas",
    },
    "Vary": {"schema": {"type": "string", "enum": ["Accept-Encoding"]}, "description": "Accept-Encoding"},
}
SEAT_MAP_HEADERS = {
    **SEAT_MAP_VALIDATORS,
    "Content-Encoding": {
        "schema": {"type": "string", "enum": ["gzip"]},
        "description": "gzip when the request's Accept-Encoding takes it (absent otherwise)",
    },
}
ASSET = {"200": {"description": "the asset"}, "404": NOT_FOUND}


def paths() -> dict:
    booking = ref("Booking")
    return {
        "/health": get(
            "Is every dependency answering?",
            {"200": answer("all ok", ref("Health")), "503": answer("degraded", ref("Health"))},
        ),
        "/ping": get(
            "Liveness, touching no dependency (the benchmark's do-nothing endpoint)",
            {"200": answer("the process answers", ref("Pong"))},
        ),
        "/admin/events": {
            "post": {
                "summary": "Create an event with its performances and seats (admin)",
                "security": [{"adminToken": []}],
                "parameters": [IDEMPOTENCY_KEY],
                "requestBody": body("CreateEvent"),
                "responses": {
                    "201": answer("created", ref("Event")),
                    "400": error("INVALID_REQUEST"),
                    "401": error("UNAUTHORIZED: missing or wrong X-Admin-Token"),
                    "409": error("IDEMPOTENCY_IN_PROGRESS"),
                    "422": error("IDEMPOTENCY_KEY_REUSED"),
                    **BODY_REFUSED,
                    "503": UNAVAILABLE,
                },
            }
        },
        "/events": get(
            "List events, oldest first, a page at a time",
            {
                "200": answer("a page", ref("EventList")),
                "400": error("INVALID_REQUEST: bad limit or cursor"),
                "503": UNAVAILABLE,
            },
            {
                "name": "limit",
                "in": "query",
                "schema": {
                    "type": "integer",
                    "minimum": 1,
                    "maximum": MAX_PAGE_SIZE,
                    "default": DEFAULT_PAGE_SIZE,
                },
            },
            {"name": "cursor", "in": "query", "schema": {"type": "string"}},
        ),
        "/events/{event_id}": get(
            "One event with its performances and sections",
            {"200": answer("the event", ref("Event")), "404": NOT_FOUND, "503": UNAVAILABLE},
            in_path("event_id", ID),
        ),
        "/performances/{performance_id}/seats": get(
            "The seat map of a performance",
            {
                "200": answer(
                    "the seat map: the full view (a record per seat) or the compact view (a letter per "
                    "seat); with `since`, the seats that changed after that version",
                    {"oneOf": [ref("SeatMap"), ref("CompactSeatMap"), ref("SeatMapChanges")]},
                    headers=SEAT_MAP_HEADERS,
                ),
                "304": answer(
                    "not modified since the ETag in If-None-Match, or (with `since`) nothing changed after "
                    "that version; empty body",
                    headers=SEAT_MAP_VALIDATORS,
                ),
                "400": error("INVALID_REQUEST: an unknown view, or a since that is not a version"),
                "404": NOT_FOUND,
                "410": error(
                    f"VERSION_GONE: since is older than the change history kept (the last {CHANGE_HISTORY:,} "
                    "versions), "
                    "newer than the map, or from before the map was rebuilt: read the whole map again"
                ),
                "503": UNAVAILABLE,
            },
            in_path("performance_id", ID),
            {
                "name": "view",
                "in": "query",
                "description": "full: a record per seat; compact: per section its shape and one letter per "
                "seat (A available, H held, B booked)",
                "schema": {"type": "string", "enum": list(VIEWS), "default": FULL},
            },
            {
                "name": "since",
                "in": "query",
                "description": "a version the client holds (from a map or an earlier delta): answer only the "
                "seats whose status changed after it, as `SeatMapChanges`; 304 when none did; 410 "
                "VERSION_GONE when the change history does not reach it",
                "schema": {"type": "string", "pattern": "^[0-9]{1,18}$"},
            },
            header("If-None-Match", "the ETag of the map the client has (or *)"),
            header("Accept-Encoding", "gzip (with q > 0, identity not weighted higher) gets the map gzipped"),
            description="Conditional: the answer carries a weak ETag naming the map's version and its "
            "representation; a request whose If-None-Match names the current one is answered 304 with an "
            "empty body. Every view carries the map's version. Cacheable by a shared cache for about a "
            "second (Cache-Control).",
        ),
        "/dev/token": {
            "post": {
                "summary": "The local stage's sign-in (DEV_TOKENS; never in AWS): a token proving user_id",
                "requestBody": body("DevToken"),
                "responses": {
                    "201": answer("a user token (TOKEN_SIGNING_KEY, USER_TOKEN_SECONDS)", ref("Token")),
                    "400": error("INVALID_REQUEST: a bad user_id"),
                    **BODY_REFUSED,
                },
            }
        },
        "/performances/{performance_id}/bookings": {
            "post": {
                "summary": "Book seats, all or nothing, as the signed-in user",
                "security": SIGNED_IN,
                "parameters": [in_path("performance_id", ID), IDEMPOTENCY_KEY, ADMISSION_TOKEN],
                "requestBody": body("BookingRequest"),
                "responses": {
                    "201": answer("CONFIRMED (db_lock, redis_lock)", booking),
                    "202": answer(
                        "PENDING, journaled in MySQL before this answer; poll Location. redis_async: the "
                        "seats are held for this booking alone, which ends CONFIRMED (or FAILED if it cannot "
                        "be confirmed, seats released). fifo_partition, stream_state: a place in line; the "
                        "booking ends CONFIRMED or REJECTED.",
                        booking,
                        headers={"Location": {"schema": {"type": "string"}, "description": "/bookings/{id}"}},
                    ),
                    "400": error(
                        "INVALID_REQUEST: malformed, duplicates, too many seats, another performance's seat"
                    ),
                    **UNAUTHORIZED,
                    **RATE_LIMITED,
                    **ADMISSION_REQUIRED,
                    "404": error("NOT_FOUND: unknown performance or seat"),
                    "409": error("SEAT_UNAVAILABLE (with seat_ids), or IDEMPOTENCY_IN_PROGRESS"),
                    "422": error("IDEMPOTENCY_KEY_REUSED: same key, different body"),
                    **BODY_REFUSED,
                    "503": error(
                        "SERVICE_UNAVAILABLE: a dependency is down; nothing was booked. Every strategy "
                        "needs MySQL to accept (a booking is journaled there before its 201/202)"
                    ),
                },
            }
        },
        "/performances/{performance_id}/queue": {
            "post": {
                "summary": "Join the performance's waiting room (once per user: the same ticket back while "
                "it lives)",
                "security": SIGNED_IN,
                "parameters": [in_path("performance_id", ID)],
                "responses": {
                    "200": answer("the user's ticket, joined before", ref("QueueTicket")),
                    "201": answer("a new ticket, at the back of the queue", ref("QueueTicket")),
                    **UNAUTHORIZED,
                    **RATE_LIMITED,
                    "404": error("NOT_FOUND: unknown performance, or one without a waiting room"),
                    "503": UNAVAILABLE,
                },
            }
        },
        "/performances/{performance_id}/queue/{ticket}": {
            **get(
                "The user's ticket: position, serving number, estimated wait; the admission token once its "
                "turn has come (the first such read collects it)",
                {
                    "200": answer("the ticket", ref("QueueTicket")),
                    **UNAUTHORIZED,
                    "404": error("NOT_FOUND: no such ticket, or another user's"),
                    "410": error(
                        "TICKET_LAPSED: its turn came and it was not collected within "
                        "WAITING_ROOM_COLLECT_SECONDS; join again"
                    ),
                    "503": UNAVAILABLE,
                },
                in_path("performance_id", ID),
                in_path("ticket"),
                security=SIGNED_IN,
            ),
        },
        "/bookings/{booking_id}": {
            **get(
                "A booking of the signed-in user and its status",
                {"200": answer("the booking", booking), **UNAUTHORIZED, "404": NOT_YOURS, "503": UNAVAILABLE},
                in_path("booking_id"),
                security=SIGNED_IN,
            ),
            "delete": {
                "summary": "Cancel a booking (its owner only); its seats become AVAILABLE",
                "security": SIGNED_IN,
                "parameters": [in_path("booking_id"), IDEMPOTENCY_KEY, ADMISSION_TOKEN],
                "responses": {
                    "200": answer("CANCELLED", booking),
                    "400": error("INVALID_REQUEST: a bad Idempotency-Key"),
                    **UNAUTHORIZED,
                    **RATE_LIMITED,
                    **ADMISSION_REQUIRED,
                    "404": NOT_YOURS,
                    "409": error("NOT_CANCELLABLE: already final (an expired hold too)"),
                    "422": error("IDEMPOTENCY_KEY_REUSED"),
                    "503": UNAVAILABLE,
                },
            },
        },
        "/bookings/{booking_id}/confirm": {
            "post": {
                "summary": "Confirm a hold (its owner only): HELD -> CONFIRMED, the payment reference stored",
                "security": SIGNED_IN,
                "parameters": [in_path("booking_id"), ADMISSION_TOKEN],
                "requestBody": body("ConfirmHold"),
                "responses": {
                    "200": answer("CONFIRMED (the same confirm again answers the same)", booking),
                    "400": error("INVALID_REQUEST: a bad payment_reference"),
                    **UNAUTHORIZED,
                    **RATE_LIMITED,
                    **ADMISSION_REQUIRED,
                    "404": NOT_YOURS,
                    "409": error(
                        "HOLD_EXPIRED: past expires_at (the booking is EXPIRED, its seats free); "
                        "NOT_CONFIRMABLE: not HELD (still PENDING, cancelled, a purchase, or confirmed "
                        "with another payment_reference)"
                    ),
                    **BODY_REFUSED,
                    "503": UNAVAILABLE,
                },
            }
        },
        "/bookings/{booking_id}/extend": {
            "post": {
                "summary": "Extend a hold (its owner only): expires_at -> now + HOLD_SECONDS",
                "security": SIGNED_IN,
                "parameters": [in_path("booking_id"), ADMISSION_TOKEN],
                "responses": {
                    "200": answer("HELD, with its new expires_at", booking),
                    **UNAUTHORIZED,
                    **RATE_LIMITED,
                    **ADMISSION_REQUIRED,
                    "404": NOT_YOURS,
                    "409": error(
                        "EXTENSION_LIMIT: extended HOLD_MAX_EXTENSIONS times already; HOLD_EXPIRED: past "
                        "expires_at; NOT_EXTENDABLE: not HELD"
                    ),
                    "503": UNAVAILABLE,
                },
            }
        },
        "/openapi.json": get("This document", {"200": answer("OpenAPI 3.0", {"type": "object"})}),
        "/docs": get("Swagger UI (assets served by the app; works offline)", {"200": html("HTML page")}),
        "/": get(
            "The live seat-map page (events, performances, seat map, booking)",
            {"200": html("HTML page"), "304": {"description": "not modified; empty body"}},
            header("If-None-Match", "the page's ETag the client has"),
        ),
        "/assets/{name}": get(
            "An asset of the seat-map page (immutable: named by digest in the page)", ASSET, in_path("name")
        ),
        "/docs/assets/{name}": get("A Swagger UI asset", ASSET, in_path("name")),
    }


@cache
def build_openapi_document(max_seats_per_booking: int, server_url: str | None = None) -> dict:
    document = {
        "openapi": "3.0.3",
        "info": {
            "title": "Seat booking",
            "version": "1.0.0",
            "description": "Books seats of performances and never sells one twice. Every error is "
            '{"error": {"code", "message", ...}}. Contract: docs/api.md.',
        },
        "paths": paths(),
        "components": {
            "schemas": schemas(max_seats_per_booking),
            "securitySchemes": {
                "adminToken": {"type": "apiKey", "in": "header", "name": "X-Admin-Token"},
                "userToken": {
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "JWT",
                    "description": "the user's JWT (`sub`: the user): Cognito's in AWS, POST /dev/token's "
                    "in the local stage",
                },
            },
        },
    }
    if server_url:
        document["servers"] = [{"url": server_url}]
    return document


ROUTES: frozenset[tuple[str, str]] = frozenset(
    (method.upper(), path) for path, operations in paths().items() for method in operations
)
# The routes whose caller must be signed in: in AWS, API Gateway's Cognito authorizer guards exactly these
# (infra/aws_template.py); locally the app verifies their tokens itself (app.py's _caller).
SIGNED_IN_ROUTES: frozenset[tuple[str, str]] = frozenset(
    (method.upper(), path)
    for path, operations in paths().items()
    for method, operation in operations.items()
    if operation.get("security") == SIGNED_IN
)


def as_json_schema(node: Any) -> Any:
    """OpenAPI 3.0's `nullable: true` -> JSON Schema's type list (for validating real answers)."""
    if isinstance(node, list):
        return [as_json_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    converted = {key: as_json_schema(value) for key, value in node.items() if key != "nullable"}
    if node.get("nullable") and "allOf" in node:  # a nullable object: its schema or null
        return {"anyOf": [*converted.pop("allOf"), {"type": "null"}], **converted}
    if node.get("nullable"):
        converted["type"] = [node["type"], "null"]
    return converted


def response_schema(path: str, method: str, status: int, max_seats_per_booking: int = 4) -> dict:
    """A self-contained JSON schema of a documented response body (for validating real answers)."""
    document = build_openapi_document(max_seats_per_booking)
    response = document["paths"][path][method.lower()]["responses"][str(status)]
    schema = response["content"]["application/json"]["schema"]
    return as_json_schema({**schema, "components": document["components"]})
