"""Input rules of the contract, checked before anything is touched: bad input changes nothing."""

from __future__ import annotations

import json
import unicodedata
from datetime import UTC, datetime
from typing import Any

from chalicelib.domain.errors import InvalidRequest, NotFound, PayloadTooLarge
from chalicelib.domain.models import STRATEGY_NAMES, EventSpec, PerformanceSpec, SectionSpec

MAX_NAME_LENGTH = 200
MAX_USER_ID_LENGTH = 64
MAX_IDEMPOTENCY_KEY_LENGTH = 128
MAX_PERFORMANCES = 50
MAX_SECTIONS = 50
MAX_ROWS = 500
MAX_SEATS_PER_ROW = 500
MAX_SEATS_PER_PERFORMANCE = 50_000
MAX_PRICE = 10**12
# The largest valid body (an event with 50 sections of 200-character escaped names) is ~150 kB; anything
# bigger is refused unread. API Gateway itself caps payloads at 10 MB; the local adapter uses this limit too.
MAX_BODY_BYTES = 512 * 1024


def parse_json_body(raw: bytes | str | None) -> Any:
    """The request body as JSON; bad, oversized or pathologically nested bodies are the client's error."""
    if not raw:
        raise InvalidRequest("a JSON request body is required")
    if len(raw) > MAX_BODY_BYTES:
        raise PayloadTooLarge(f"bodies are limited to {MAX_BODY_BYTES} bytes")
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):
        # RecursionError: `[[[[...` nested deeper than the interpreter's stack (a 500 before).
        raise InvalidRequest("the request body is not valid JSON") from None


def _require_object(body: Any, what: str) -> dict:
    if not isinstance(body, dict):
        raise InvalidRequest(f"{what} must be a JSON object")
    return body


def _reject_unknown_fields(body: dict, allowed: set[str], what: str) -> None:
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise InvalidRequest(f"{what} has unknown field(s): {', '.join(unknown)}", fields=unknown)


def _has_control_characters(text: str) -> bool:
    # Category C* = control, format, surrogate, private use, unassigned: never part of a name.
    return any(unicodedata.category(ch).startswith("C") for ch in text)


def _text(body: dict, name: str, max_length: int) -> str:
    value = body.get(name)
    if not isinstance(value, str) or not value.strip():
        raise InvalidRequest(f"'{name}' must be a non-empty string", field=name)
    if len(value) > max_length:
        raise InvalidRequest(f"'{name}' must be at most {max_length} characters", field=name)
    if _has_control_characters(value):
        raise InvalidRequest(f"'{name}' must not contain control characters", field=name)
    return value


def _positive_int(body: dict, name: str, maximum: int, minimum: int = 1) -> int:
    value = body.get(name)
    # bool is an int in Python; JSON true is not a number.
    if not isinstance(value, int) or isinstance(value, bool) or not minimum <= value <= maximum:
        raise InvalidRequest(f"'{name}' must be an integer from {minimum} to {maximum}", field=name)
    return value


def _list(body: dict, name: str, max_items: int) -> list:
    value = body.get(name)
    if not isinstance(value, list) or not value:
        raise InvalidRequest(f"'{name}' must be a non-empty list", field=name)
    if len(value) > max_items:
        raise InvalidRequest(f"'{name}' may hold at most {max_items} items", field=name)
    return value


def parse_path_id(raw: str, what: str) -> int:
    """Ids in paths are positive integers; anything else cannot name an existing thing."""
    if not raw.isascii() or not raw.isdigit() or len(raw) > 18 or int(raw) < 1:
        raise NotFound(f"{what} {raw!r} not found")
    return int(raw)


def parse_starts_at(raw: Any) -> datetime:
    # ISO 8601 is printable ASCII; fromisoformat() alone lets a NUL through ("...+09:00\x00").
    if not isinstance(raw, str) or len(raw) > 64 or not (raw.isascii() and raw.isprintable()):
        raise InvalidRequest("'starts_at' must be an ISO 8601 date-time string", field="starts_at")
    try:
        value = datetime.fromisoformat(raw)
    except ValueError:
        raise InvalidRequest("'starts_at' must be an ISO 8601 date-time string", field="starts_at") from None
    if value.tzinfo is None:
        raise InvalidRequest("'starts_at' must carry a UTC offset, e.g. +09:00 or Z", field="starts_at")
    try:
        utc = value.astimezone(UTC)
    except OverflowError:  # 0001-01-01T00:00+14:00 has no UTC time (was a 500 when stored)
        utc = None
    # MySQL's DATETIME (starts_at_utc) holds the years 1000 to 9999.
    if utc is None or not 1000 <= utc.year <= 9999:
        raise InvalidRequest("'starts_at' must be in the years 1000 to 9999 (UTC)", field="starts_at")
    return value


def parse_event_spec(body: Any, default_strategy: str) -> EventSpec:
    body = _require_object(body, "the request body")
    _reject_unknown_fields(body, {"name", "venue", "performances", "sections"}, "the event")
    name = _text(body, "name", MAX_NAME_LENGTH)
    venue = _text(body, "venue", MAX_NAME_LENGTH)
    performances = tuple(
        _parse_performance(item, default_strategy) for item in _list(body, "performances", MAX_PERFORMANCES)
    )
    sections = tuple(_parse_section(item) for item in _list(body, "sections", MAX_SECTIONS))
    names = [section.name for section in sections]
    if len(set(names)) != len(names):
        raise InvalidRequest("section names must be distinct", field="sections")
    total = sum(section.seat_count for section in sections)
    if total > MAX_SEATS_PER_PERFORMANCE:
        raise InvalidRequest(
            f"a performance may have at most {MAX_SEATS_PER_PERFORMANCE} seats, not {total}", field="sections"
        )
    return EventSpec(name=name, venue=venue, performances=performances, sections=sections)


def _parse_performance(item: Any, default_strategy: str) -> PerformanceSpec:
    item = _require_object(item, "each performance")
    _reject_unknown_fields(item, {"starts_at", "strategy"}, "a performance")
    strategy = item.get("strategy", default_strategy)
    if strategy not in STRATEGY_NAMES:
        raise InvalidRequest(f"'strategy' must be one of {', '.join(STRATEGY_NAMES)}", field="strategy")
    return PerformanceSpec(starts_at=parse_starts_at(item.get("starts_at")), strategy=strategy)


def _parse_section(item: Any) -> SectionSpec:
    item = _require_object(item, "each section")
    _reject_unknown_fields(item, {"name", "price", "rows", "seats_per_row"}, "a section")
    return SectionSpec(
        name=_text(item, "name", MAX_NAME_LENGTH),
        price=_positive_int(item, "price", MAX_PRICE, minimum=0),
        rows=_positive_int(item, "rows", MAX_ROWS),
        seats_per_row=_positive_int(item, "seats_per_row", MAX_SEATS_PER_ROW),
    )


def parse_booking_body(body: Any, max_seats: int) -> tuple[str, tuple[int, ...]]:
    """-> (user_id, seat ids sorted ascending). Sorting fixes the order every strategy takes seats in."""
    body = _require_object(body, "the request body")
    _reject_unknown_fields(body, {"user_id", "seat_ids"}, "the booking")
    user_id = _text(body, "user_id", MAX_USER_ID_LENGTH)
    seat_ids = body.get("seat_ids")
    if not isinstance(seat_ids, list) or not seat_ids:
        raise InvalidRequest("'seat_ids' must be a non-empty list of seat ids", field="seat_ids")
    if len(seat_ids) > max_seats:
        raise InvalidRequest(f"at most {max_seats} seats per booking", field="seat_ids")
    if any(not isinstance(s, int) or isinstance(s, bool) or s < 1 for s in seat_ids):
        raise InvalidRequest("'seat_ids' must hold positive integers", field="seat_ids")
    if len(set(seat_ids)) != len(seat_ids):
        raise InvalidRequest("'seat_ids' must be distinct", field="seat_ids")
    return user_id, tuple(sorted(seat_ids))


def parse_idempotency_key(raw: str | None) -> str | None:
    if raw is None:
        return None
    if not 1 <= len(raw) <= MAX_IDEMPOTENCY_KEY_LENGTH or not all(" " <= ch <= "~" for ch in raw):
        raise InvalidRequest(
            f"Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY_LENGTH} printable ASCII characters",
            field="Idempotency-Key",
        )
    return raw
