"""Answers whose bytes were made before the request (the seat map's views, seat_map_views.py): sent as they
are, in the content coding the client accepts (RFC 9110 §12.5.3), with nothing serialised or compressed per
request.

Chalice's Response would json.dumps a body that is not a string, and decides base64 by `app.api.binary_types`
(which also makes it refuse, 400, any request whose Accept header names no binary type). A prepared answer
carries its body as text and says itself whether that text is base64, as a Lambda proxy answer does."""

from __future__ import annotations

from typing import Any

from chalice import Response

GZIP = "gzip"
VARY = "Accept-Encoding"


class PreparedResponse(Response):
    """A body already in its final text form; `base64_encoded` for bytes (a compressed body) as base64."""

    def __init__(
        self, body: str, headers: dict[str, str], status_code: int = 200, *, base64_encoded: bool = False
    ) -> None:
        super().__init__(body=body, headers=headers, status_code=status_code)
        self.base64_encoded = base64_encoded

    def to_dict(self, binary_types: list[str] | None = None) -> dict[str, Any]:
        answer = super().to_dict()  # no binary_types: a str body is passed on as it is
        if self.base64_encoded:
            answer["isBase64Encoded"] = True
        return answer


def accepts_gzip(accept_encoding: str | None) -> bool:
    """True if the client takes gzip (`gzip`, `x-gzip`, or `*` when gzip is not named) with q > 0, and does
    not weight identity (named, or through `*`) above it. No header: identity."""
    if not accept_encoding:
        return False
    weights: dict[str, float] = {}
    for part in accept_encoding.split(","):
        coding, _, parameters = part.partition(";")
        coding = coding.strip().lower()
        if coding:
            weights[GZIP if coding == "x-gzip" else coding] = _quality(parameters)
    gzip = weights.get(GZIP, weights.get("*", 0.0))
    # Identity is always acceptable (RFC 9110 §12.5.3), but preferred to gzip only where the client weights it
    # higher: named, or through `*`. A client that names gzip at all (q > 0) otherwise wants it.
    identity = weights.get("identity", weights.get("*", 0.0))
    return gzip > 0 and gzip >= identity


def _quality(parameters: str) -> float:
    for parameter in parameters.split(";"):
        name, _, value = parameter.partition("=")
        if name.strip().lower() == "q":
            try:
                return min(max(float(value.strip()), 0.0), 1.0)
            except ValueError:
                return 0.0  # an unreadable weight: not a coding to choose
    return 1.0
