"""Conditional GETs (RFC 9110 §8.8.3, §13.1.2): an ETag on the answer, and 304 Not Modified with an empty body
when the client's If-None-Match already names it, so a client polling an unchanged resource costs a few
hundred bytes instead of the whole representation."""

from __future__ import annotations

CACHE_CONTROL = "no-cache"  # caches may keep the answer but must ask (If-None-Match) before reusing it


def seat_map_etag(seat_map: dict) -> str:
    """Weak, because it names the map's content, not its bytes: the seat map's version grows with every seat
    change of the performance and never repeats (redis_seats.py), so one version is one content."""
    return f'W/"{seat_map["performance_id"]}-{seat_map["version"]}"'


def is_not_modified(if_none_match: str | None, etag: str) -> bool:
    """True if If-None-Match is `*` or lists `etag` (weak comparison: a W/ prefix on either side is
    ignored), i.e. the answer is 304."""
    if not if_none_match:
        return False
    wanted = _opaque(etag)
    for candidate in if_none_match.split(","):
        candidate = candidate.strip()
        if candidate == "*" or (candidate and _opaque(candidate) == wanted):
            return True
    return False


def _opaque(tag: str) -> str:
    return tag[2:] if tag.startswith("W/") else tag
