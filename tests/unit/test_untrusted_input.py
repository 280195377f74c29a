"""Untrusted input at the edge: the JSON body parser, start times, the local WSGI adapter's body limit."""

from __future__ import annotations

import io
import json

import pytest

from chalicelib.domain.errors import InvalidRequest, PayloadTooLarge
from chalicelib.domain.validation import MAX_BODY_BYTES, parse_json_body, parse_starts_at
from infra.local.wsgi import ChaliceWsgiAdapter


@pytest.mark.parametrize(
    "raw",
    [
        None,
        b"",
        b"{oops",
        b"[" * 100_000,  # deeper than the interpreter's recursion limit: was a 500 (RecursionError)
        b'{"a":' * 100_000,
        b"\xff\xfe\xfa",  # not UTF-8 (nor UTF-16/32)
        b"1" * 5000,  # more digits than int() converts
    ],
    ids=["none", "empty", "malformed", "deep-arrays", "deep-objects", "not-utf8", "huge-number"],
)
def test_bad_bodies_are_invalid_requests(raw) -> None:
    with pytest.raises(InvalidRequest):
        parse_json_body(raw)


def test_bodies_over_the_limit_are_refused_unparsed() -> None:
    padded = b'{"user_id": "ann", "seat_ids": [1]}'.ljust(MAX_BODY_BYTES + 1)  # valid JSON, just too big
    with pytest.raises(PayloadTooLarge):
        parse_json_body(padded)
    assert parse_json_body(padded[:MAX_BODY_BYTES]) == {"user_id": "ann", "seat_ids": [1]}


class _EchoGateway:
    """Answers with the body it was handed, to see what the adapter passes on."""

    def handle_request(self, method: str, path: str, headers: dict, body: bytes | None) -> dict:
        return {"statusCode": 200, "headers": {}, "body": json.dumps({"body": (body or b"").decode()})}


def _call(body: bytes, content_length: str | None, limit: int = 64) -> tuple[str, bytes]:
    environ = {"REQUEST_METHOD": "POST", "PATH_INFO": "/x", "wsgi.input": io.BytesIO(body)}
    if content_length is not None:
        environ["CONTENT_LENGTH"] = content_length
    seen = []
    payload = b"".join(ChaliceWsgiAdapter(_EchoGateway(), limit)(environ, lambda s, h: seen.append(s)))
    return seen[0], payload


@pytest.mark.parametrize("content_length", ["10", None], ids=["content-length", "chunked"])
def test_the_adapter_passes_bodies_within_the_limit_with_or_without_a_length(content_length) -> None:
    assert _call(b'{"a": 123}', content_length) == ("200 OK", b'{"body": "{\\"a\\": 123}"}')


@pytest.mark.parametrize("content_length", ["65", None], ids=["content-length", "chunked"])
def test_the_adapter_refuses_bodies_over_the_limit_with_or_without_a_length(content_length) -> None:
    status, payload = _call(b"x" * 65, content_length)
    assert status == "413 Payload Too Large"
    assert json.loads(payload)["error"]["code"] == "PAYLOAD_TOO_LARGE"


@pytest.mark.parametrize(
    "raw",
    [
        "0001-01-01T00:00:00+14:00",  # no UTC time exists for it: was a 500 (OverflowError) when stored
        "9999-12-31T23:59:59-14:00",
        "0999-12-31T23:59:59Z",  # outside MySQL's DATETIME
        "2026-12-24T19:30:00+09:00\x00",  # fromisoformat() lets this NUL through
        "2026-12-24T19:30:00\x00+09:00",
        "２０２６-12-24T19:30:00+09:00",  # fullwidth digits
    ],
)
def test_start_times_mysql_cannot_hold_or_with_odd_characters_are_refused(raw: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        parse_starts_at(raw)
    assert info.value.extra["field"] == "starts_at"


@pytest.mark.parametrize("raw", ["1000-01-01T00:00:00Z", "9999-12-31T23:59:59Z", "2026-W52-4T19:30Z"])
def test_start_times_at_the_edges_of_the_range_are_accepted(raw: str) -> None:
    assert parse_starts_at(raw).tzinfo is not None


@pytest.mark.parametrize(
    ("method", "content_type", "status", "code"),
    [
        ("post", "text/plain", 415, "UNSUPPORTED_MEDIA_TYPE"),
        ("put", "application/json", 405, "METHOD_NOT_ALLOWED"),
    ],
)
def test_errors_chalice_raises_before_a_view_are_json_with_a_json_content_type(
    method: str, content_type: str, status: int, code: str
) -> None:
    # Refused before any view runs, so no MySQL, Redis or AWS is needed. They had no Content-Type at all.
    from chalice.test import Client

    import app as app_module

    with Client(app_module.app) as client:
        response = getattr(client.http, method)(
            "/performances/1/bookings", body=b"{}", headers={"Content-Type": content_type}
        )
    assert response.status_code == status
    assert response.headers["Content-Type"] == "application/json"
    assert json.loads(response.body)["error"]["code"] == code
