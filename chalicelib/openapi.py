"""The OpenAPI 3.0 document of the HTTP contract (docs/api.md), built from the code's own constants so
it cannot drift: limits from domain.validation, strategies from config, error codes from domain.errors.
tests/unit/test_openapi.py checks it against the app's routes, and the e2e tests validate every live answer
against the schemas here."""

from __future__ import annotations

from functools import cache
from typing import Any

from chalicelib.domain import errors
from chalicelib.domain.models import STRATEGY_NAMES, BookingStatus, SeatStatus
from chalicelib.domain.validation import (
    MAX_IDEMPOTENCY_KEY_LENGTH,
    MAX_NAME_LENGTH,
    MAX_PERFORMANCES,
    MAX_ROWS,
    MAX_SEATS_PER_ROW,
    MAX_SECTIONS,
    MAX_USER_ID_LENGTH,
)
from chalicelib.services.catalogue import MAX_PAGE_SIZE

# Codes raised by the domain, plus those the HTTP edge itself produces.
EDGE_ERROR_CODES = ("METHOD_NOT_ALLOWED", "UNSUPPORTED_MEDIA_TYPE", "PAYLOAD_TOO_LARGE", "INTERNAL_ERROR")
ERROR_CODES = tuple(
    sorted(
        {
            cls.code
            for cls in vars(errors).values()
            if isinstance(cls, type) and issubclass(cls, errors.BookingError)
        }
        | set(EDGE_ERROR_CODES)
    )
)

ID = {"type": "integer", "minimum": 1}


def ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def obj(properties: dict, required: list[str] | None = None, additional: bool = False) -> dict:
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties) if required is None else required,
        "additionalProperties": additional,
    }


def schemas(max_seats: int) -> dict:
    text = {"type": "string", "minLength": 1, "maxLength": MAX_NAME_LENGTH}
    booking = obj(
        {
            "booking_id": {"type": "string", "minLength": 1},
            "performance_id": ID,
            "user_id": {"type": "string", "minLength": 1, "maxLength": MAX_USER_ID_LENGTH},
            "seat_ids": {"type": "array", "items": ID, "minItems": 1, "maxItems": max_seats},
            "status": {"type": "string", "enum": [s.value for s in BookingStatus]},
            "strategy": {"type": "string", "enum": list(STRATEGY_NAMES)},
            "reason": {
                "type": "string",
                "nullable": True,
                "description": "why a booking is REJECTED, FAILED or CANCELLED",
            },
        }
    )
    return {
        "Error": obj(
            {
                "error": {
                    "type": "object",
                    "properties": {
                        "code": {"type": "string", "enum": list(ERROR_CODES)},
                        "message": {"type": "string"},
                        "seat_ids": {
                            "type": "array",
                            "items": {"type": "integer"},
                            "description": "SEAT_UNAVAILABLE: the seats already taken",
                        },
                        "field": {"type": "string", "description": "INVALID_REQUEST: the offending field"},
                    },
                    "required": ["code", "message"],
                    "additionalProperties": True,
                }
            }
        ),
        "Health": obj(
            {
                "status": {"type": "string", "enum": ["ok", "degraded"]},
                "checks": obj(
                    {
                        name: {"type": "string", "description": "ok, or why not"}
                        for name in ("db", "redis", "queue")
                    }
                ),
            }
        ),
        "CreateEvent": obj(
            {
                "name": text,
                "venue": text,
                "performances": {
                    "type": "array",
                    "minItems": 1,
                    "maxItems": MAX_PERFORMANCES,
                    "items": obj(
                        {
                            "starts_at": {
                                "type": "string",
                                "format": "date-time",
                                "description": "ISO 8601 with a UTC offset",
                            },
                            "strategy": {
                                "type": "string",
                                "enum": list(STRATEGY_NAMES),
                                "description": "default: the deployment's DEFAULT_STRATEGY",
                            },
                        },
                        required=["starts_at"],
                    ),
                },
                "sections": {
                    "type": "array",
                    "minItems": 1,
                    "maxItems": MAX_SECTIONS,
                    "items": obj(
                        {
                            "name": text,
                            "price": {"type": "integer", "minimum": 0},
                            "rows": {"type": "integer", "minimum": 1, "maximum": MAX_ROWS},
                            "seats_per_row": {"type": "integer", "minimum": 1, "maximum": MAX_SEATS_PER_ROW},
                        }
                    ),
                },
            }
        ),
        "Section": obj(
            {
                "section_id": ID,
                "name": {"type": "string"},
                "price": {"type": "integer"},
                "seat_count": {"type": "integer"},
                "first_seat_id": ID,
                "last_seat_id": ID,
            }
        ),
        "Performance": obj(
            {
                "performance_id": ID,
                "starts_at": {"type": "string"},
                "strategy": {"type": "string", "enum": list(STRATEGY_NAMES)},
                "sections": {"type": "array", "items": ref("Section")},
            }
        ),
        "Event": obj(
            {
                "event_id": ID,
                "name": {"type": "string"},
                "venue": {"type": "string"},
                "performances": {"type": "array", "items": ref("Performance")},
            }
        ),
        "EventList": obj(
            {
                "events": {
                    "type": "array",
                    "items": obj({"event_id": ID, "name": {"type": "string"}, "venue": {"type": "string"}}),
                },
                "next_cursor": {
                    "type": "string",
                    "nullable": True,
                    "description": "pass as ?cursor= for the next page",
                },
            }
        ),
        "SeatMap": obj(
            {
                "performance_id": ID,
                "strategy": {"type": "string", "enum": list(STRATEGY_NAMES)},
                "version": {
                    "type": "integer",
                    "description": "grows with every seat change of the performance",
                },
                "sections": {
                    "type": "array",
                    "items": obj(
                        {
                            "section_id": ID,
                            "name": {"type": "string"},
                            "price": {"type": "integer"},
                            "available": {"type": "integer", "minimum": 0},
                            "seats": {
                                "type": "array",
                                "items": obj(
                                    {
                                        "seat_id": ID,
                                        "row": {"type": "integer"},
                                        "number": {"type": "integer"},
                                        "status": {"type": "string", "enum": [s.value for s in SeatStatus]},
                                    }
                                ),
                            },
                        }
                    ),
                },
            }
        ),
        "BookingRequest": obj(
            {
                "user_id": {"type": "string", "minLength": 1, "maxLength": MAX_USER_ID_LENGTH},
                "seat_ids": {
                    "type": "array",
                    "items": ID,
                    "minItems": 1,
                    "maxItems": max_seats,
                    "uniqueItems": True,
                },
            }
        ),
        "Booking": booking,
    }


def json_content(schema: dict) -> dict:
    return {"content": {"application/json": {"schema": schema}}}


def error(description: str) -> dict:
    return {"description": description, **json_content(ref("Error"))}


def header(name: str, description: str, required: bool = False, **schema: Any) -> dict:
    return {
        "name": name,
        "in": "header",
        "required": required,
        "description": description,
        "schema": {"type": "string", **schema},
    }


def path_id(name: str) -> dict:
    return {"name": name, "in": "path", "required": True, "schema": ID}


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
PONG = obj({"status": {"type": "string", "enum": ["ok"]}})
# Refused before the body is parsed (413: MAX_BODY_BYTES; 415: a Content-Type other than JSON).
BODY_REFUSED = {
    "413": error("PAYLOAD_TOO_LARGE: the body is over the size limit"),
    "415": error("UNSUPPORTED_MEDIA_TYPE: the body is not application/json"),
}


SEAT_MAP_VALIDATORS = {
    "ETag": {"schema": {"type": "string"}, "description": 'W/"<performance_id>-<version>"'},
    "Cache-Control": {"schema": {"type": "string"}, "description": "no-cache: revalidate before reuse"},
}


def paths() -> dict:
    booking_answer = json_content(ref("Booking"))
    return {
        "/health": {
            "get": {
                "summary": "Is every dependency answering?",
                "responses": {
                    "200": {"description": "all ok", **json_content(ref("Health"))},
                    "503": {"description": "degraded", **json_content(ref("Health"))},
                },
            }
        },
        "/ping": {
            "get": {
                "summary": "Liveness, touching no dependency (the benchmark's do-nothing endpoint)",
                "responses": {"200": {"description": "the process answers", **json_content(PONG)}},
            }
        },
        "/admin/events": {
            "post": {
                "summary": "Create an event with its performances and seats (admin)",
                "security": [{"adminToken": []}],
                "parameters": [IDEMPOTENCY_KEY],
                "requestBody": {"required": True, **json_content(ref("CreateEvent"))},
                "responses": {
                    "201": {"description": "created", **json_content(ref("Event"))},
                    "400": error("INVALID_REQUEST"),
                    "401": error("UNAUTHORIZED: missing or wrong X-Admin-Token"),
                    "409": error("IDEMPOTENCY_IN_PROGRESS"),
                    "422": error("IDEMPOTENCY_KEY_REUSED"),
                    **BODY_REFUSED,
                    "503": UNAVAILABLE,
                },
            }
        },
        "/events": {
            "get": {
                "summary": "List events, oldest first, a page at a time",
                "parameters": [
                    {
                        "name": "limit",
                        "in": "query",
                        "schema": {"type": "integer", "minimum": 1, "maximum": MAX_PAGE_SIZE, "default": 20},
                    },
                    {"name": "cursor", "in": "query", "schema": {"type": "string"}},
                ],
                "responses": {
                    "200": {"description": "a page", **json_content(ref("EventList"))},
                    "400": error("INVALID_REQUEST: bad limit or cursor"),
                    "503": UNAVAILABLE,
                },
            }
        },
        "/events/{event_id}": {
            "get": {
                "summary": "One event with its performances and sections",
                "parameters": [path_id("event_id")],
                "responses": {
                    "200": {"description": "the event", **json_content(ref("Event"))},
                    "404": error("NOT_FOUND"),
                    "503": UNAVAILABLE,
                },
            }
        },
        "/performances/{performance_id}/seats": {
            "get": {
                "summary": "The seat map of a performance",
                "description": "Conditional: the answer carries a weak ETag naming the map's version; a "
                "request whose If-None-Match names the current one is answered 304 with an empty body.",
                "parameters": [
                    path_id("performance_id"),
                    header("If-None-Match", "the ETag of the map the client has (or *)"),
                ],
                "responses": {
                    "200": {
                        "description": "the seat map",
                        **json_content(ref("SeatMap")),
                        "headers": SEAT_MAP_VALIDATORS,
                    },
                    "304": {
                        "description": "not modified since the ETag in If-None-Match; empty body",
                        "headers": SEAT_MAP_VALIDATORS,
                    },
                    "404": error("NOT_FOUND"),
                    "503": UNAVAILABLE,
                },
            }
        },
        "/performances/{performance_id}/bookings": {
            "post": {
                "summary": "Book seats, all or nothing",
                "parameters": [path_id("performance_id"), IDEMPOTENCY_KEY],
                "requestBody": {"required": True, **json_content(ref("BookingRequest"))},
                "responses": {
                    "201": {"description": "CONFIRMED (db_lock, redis_lock)", **booking_answer},
                    "202": {
                        "description": "PENDING, journaled in MySQL before this answer; poll Location."
                        " redis_async: the seats are held for this booking alone, which ends CONFIRMED (or"
                        " FAILED if it cannot be confirmed, seats released). fifo_partition, stream_state:"
                        " a place in line; the booking ends CONFIRMED or REJECTED.",
                        **booking_answer,
                        "headers": {
                            "Location": {"schema": {"type": "string"}, "description": "/bookings/{id}"}
                        },
                    },
                    "400": error(
                        "INVALID_REQUEST: malformed, duplicates, too many seats, another performance's seat"
                    ),
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
        "/bookings/{booking_id}": {
            "get": {
                "summary": "A booking and its status",
                "parameters": [
                    {"name": "booking_id", "in": "path", "required": True, "schema": {"type": "string"}}
                ],
                "responses": {
                    "200": {"description": "the booking", **booking_answer},
                    "404": error("NOT_FOUND"),
                    "503": UNAVAILABLE,
                },
            },
            "delete": {
                "summary": "Cancel a booking (its owner only); its seats become AVAILABLE",
                "parameters": [
                    {"name": "booking_id", "in": "path", "required": True, "schema": {"type": "string"}},
                    header("X-User-Id", "must equal the booking's user_id", required=True),
                    IDEMPOTENCY_KEY,
                ],
                "responses": {
                    "200": {"description": "CANCELLED", **booking_answer},
                    "400": error("INVALID_REQUEST: X-User-Id missing"),
                    "403": error("FORBIDDEN: not the owner"),
                    "404": error("NOT_FOUND"),
                    "409": error("NOT_CANCELLABLE: already final"),
                    "422": error("IDEMPOTENCY_KEY_REUSED"),
                    "503": UNAVAILABLE,
                },
            },
        },
        "/openapi.json": {
            "get": {
                "summary": "This document",
                "responses": {"200": {"description": "OpenAPI 3.0", **json_content({"type": "object"})}},
            }
        },
        "/docs": {
            "get": {
                "summary": "Swagger UI (assets served by the app; works offline)",
                "responses": {
                    "200": {
                        "description": "HTML page",
                        "content": {"text/html": {"schema": {"type": "string"}}},
                    }
                },
            }
        },
        "/": {
            "get": {
                "summary": "The live seat-map page (events, performances, seat map, booking)",
                "parameters": [header("If-None-Match", "the page's ETag the client has")],
                "responses": {
                    "200": {
                        "description": "HTML page",
                        "content": {"text/html": {"schema": {"type": "string"}}},
                    },
                    "304": {"description": "not modified; empty body"},
                },
            }
        },
        "/assets/{name}": {
            "get": {
                "summary": "An asset of the seat-map page (immutable: named by digest in the page)",
                "parameters": [
                    {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}
                ],
                "responses": {"200": {"description": "the asset"}, "404": error("NOT_FOUND")},
            }
        },
        "/docs/assets/{name}": {
            "get": {
                "summary": "A Swagger UI asset",
                "parameters": [
                    {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}
                ],
                "responses": {"200": {"description": "the asset"}, "404": error("NOT_FOUND")},
            }
        },
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
            "securitySchemes": {"adminToken": {"type": "apiKey", "in": "header", "name": "X-Admin-Token"}},
        },
    }
    if server_url:
        document["servers"] = [{"url": server_url}]
    return document


ROUTES: frozenset[tuple[str, str]] = frozenset(
    (method.upper(), path) for path, operations in paths().items() for method in operations
)


def as_json_schema(node: Any) -> Any:
    """OpenAPI 3.0's `nullable: true` -> JSON Schema's type list (3.0 because the packaged Swagger UI, 4.x,
    does not render 3.1 documents)."""
    if isinstance(node, list):
        return [as_json_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    converted = {key: as_json_schema(value) for key, value in node.items() if key != "nullable"}
    if node.get("nullable"):
        converted["type"] = [node["type"], "null"]
    return converted


def response_schema(path: str, method: str, status: int, max_seats_per_booking: int = 4) -> dict:
    """A self-contained JSON schema of a documented response body (for validating real answers)."""
    document = build_openapi_document(max_seats_per_booking)
    response = document["paths"][path][method.lower()]["responses"][str(status)]
    schema = response["content"]["application/json"]["schema"]
    return as_json_schema({**schema, "components": document["components"]})
