"""The seat map's views as the bytes a reader is sent, made once per map version and shared by every request
(and, through the store, every process): the full view (a record per seat, the contract's original shape)
and the compact view (one character per seat). Each is kept as its JSON text and its gzip, so a read hands
out one or the other as it is: no dict is built, nothing is serialised or compressed per request.

Why both forms are kept: API Gateway's Lambda proxy carries a body as text, a compressed one in base64; the
text is the identity answer and the base64 of the gzip is the compressed one (the local server decodes it).
"""

from __future__ import annotations

import base64
import dataclasses
import gzip
import json
from collections.abc import Mapping

from chalicelib.domain.errors import InvalidRequest
from chalicelib.domain.models import Performance, SeatStatus
from chalicelib.domain.seat_map import STATUS_LETTERS

FULL = "full"
COMPACT = "compact"
VIEWS = (FULL, COMPACT)
# Level 6 (zlib's default) takes a 292 KB map to 25 KB in ~3 ms, once per version; 9 saves little more.
GZIP_LEVEL = 6
# A delta smaller than this is sent uncompressed: gzip's header and trailer would eat what it saves.
GZIP_FROM_BYTES = 1_024
# `since` is a version: a count of changes that starts at the clock in ms x 1,000 (redis_seats.py), 16 digits
# today; 18 leave room and keep it an exact integer everywhere it goes (Lua reads it as a double).
SINCE_DIGITS = 18


def parse_view(raw: str | None) -> str:
    """The `view` query parameter: `full` (also when absent) or `compact`; anything else is refused."""
    if raw is None or raw == FULL:
        return FULL
    if raw == COMPACT:
        return COMPACT
    raise InvalidRequest(f"'view' must be one of {', '.join(VIEWS)}", field="view")


def parse_since(raw: str | None) -> int | None:
    """The `since` query parameter: a version (a non-negative decimal integer), None when absent."""
    if raw is None:
        return None
    if not (raw.isascii() and raw.isdigit() and len(raw) <= SINCE_DIGITS):
        raise InvalidRequest(
            f"'since' must be a seat-map version: a non-negative integer of at most {SINCE_DIGITS} digits",
            field="since",
        )
    return int(raw)


@dataclasses.dataclass(frozen=True)
class EncodedView:
    """One answer ready to send: its JSON text and its gzip in base64 (None where not worth compressing)."""

    text: str
    gzip_base64: str | None

    @classmethod
    def of_text(cls, text: str, gzip_from_bytes: int = 0) -> EncodedView:
        if len(text) < gzip_from_bytes:
            return cls(text, None)
        compressed = gzip.compress(text.encode(), compresslevel=GZIP_LEVEL, mtime=0)
        return cls(text, base64.b64encode(compressed).decode("ascii"))

    @classmethod
    def of_gzip_base64(cls, gzip_base64: str) -> EncodedView:
        """The view as another process stored it (only the compressed form travels; the text is derived)."""
        return cls(gzip.decompress(base64.b64decode(gzip_base64)).decode(), gzip_base64)


@dataclasses.dataclass(frozen=True)
class EncodedSeatMap:
    """Every view of one version of a performance's seat map."""

    version: int
    views: Mapping[str, EncodedView]

    @classmethod
    def render(
        cls, performance: Performance, version: int, statuses: Mapping[int, SeatStatus]
    ) -> EncodedSeatMap:
        views = {
            FULL: full_seat_map(performance, version, statuses),
            COMPACT: compact_seat_map(performance, version, statuses),
        }
        return cls(version, {name: EncodedView.of_text(_json(body)) for name, body in views.items()})

    @classmethod
    def of_stored(cls, version: int, stored: Mapping[str, str]) -> EncodedSeatMap | None:
        """The map another process rendered and stored (view -> gzip in base64); None unless every view is
        there."""
        if set(stored) != set(VIEWS):
            return None
        return cls(version, {name: EncodedView.of_gzip_base64(stored[name]) for name in VIEWS})

    def to_store(self) -> dict[str, str]:
        return {name: view.gzip_base64 for name, view in self.views.items()}

    def as_dict(self, view: str = FULL) -> dict:
        """The view as data (for callers inside the service; HTTP answers send the text itself)."""
        return json.loads(self.views[view].text)


@dataclasses.dataclass(frozen=True)
class EncodedChanges:
    """The answer to `?since=`: what changed from version `since` to `version`; `view` None when nothing did
    (since is the current version: 304)."""

    since: int
    version: int
    view: EncodedView | None

    @classmethod
    def of(
        cls, performance_id: int, since: int, version: int, changes: Mapping[int, SeatStatus]
    ) -> EncodedChanges:
        if version == since:
            return cls(since, version, None)
        body = {
            "performance_id": performance_id,
            "version": version,
            "changes": [{"seat_id": seat, "status": changes[seat].value} for seat in sorted(changes)],
        }
        return cls(since, version, EncodedView.of_text(_json(body), GZIP_FROM_BYTES))


def _json(body: dict) -> str:
    # What Chalice's own serialisation of the map per request used: the full view's bytes are unchanged.
    return json.dumps(body, separators=(",", ":"))


def full_seat_map(performance: Performance, version: int, statuses: Mapping[int, SeatStatus]) -> dict:
    sections = []
    for section in performance.sections:
        seats = []
        available = 0
        for seat_id in range(section.first_seat_id, section.last_seat_id + 1):
            status = statuses.get(seat_id, SeatStatus.AVAILABLE)
            available += status is SeatStatus.AVAILABLE
            row, number = section.position_of(seat_id)
            seats.append({"seat_id": seat_id, "row": row, "number": number, "status": status.value})
        sections.append(
            {
                "section_id": section.section_id,
                "name": section.name,
                "price": section.price,
                "available": available,
                "seats": seats,
            }
        )
    return _map(performance, version, sections)


def compact_seat_map(performance: Performance, version: int, statuses: Mapping[int, SeatStatus]) -> dict:
    """Per section its shape and one letter per seat in seat-id order (row by row: Section.position_of), so
    a 5,000-seat map is a few KB."""
    sections = [
        {
            "section_id": section.section_id,
            "name": section.name,
            "price": section.price,
            "rows": section.rows,
            "seats_per_row": section.seats_per_row,
            "first_seat_id": section.first_seat_id,
            "status": "".join(
                STATUS_LETTERS[statuses.get(seat_id, SeatStatus.AVAILABLE)]
                for seat_id in range(section.first_seat_id, section.last_seat_id + 1)
            ),
        }
        for section in performance.sections
    ]
    return _map(performance, version, sections)


def _map(performance: Performance, version: int, sections: list[dict]) -> dict:
    return {
        "performance_id": performance.performance_id,
        "strategy": performance.strategy,
        "version": version,
        "sections": sections,
    }
