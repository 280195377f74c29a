"""Conditional GETs (RFC 9110 §8.8.3, §13.1.2): an ETag on the answer, and 304 Not Modified with an empty body
when the client's If-None-Match already names it, so a client polling an unchanged resource costs a few
hundred bytes instead of the whole representation."""

from __future__ import annotations

CACHE_CONTROL = "no-cache"  # caches may keep the answer but must ask (If-None-Match) before reusing it
# The seat map: a shared cache (a CDN) may answer it for 1 s, and 1 s more while it fetches the next one in
# the background; a browser's own cache must ask every time. So a shared cache's copy is at most
# SEAT_MAP_SHARED_SECONDS old (docs/seat-map.md, the staleness bound).
SEAT_MAP_SHARED_MAX_AGE = 1
SEAT_MAP_STALE_WHILE_REVALIDATE = 1
SEAT_MAP_SHARED_SECONDS = SEAT_MAP_SHARED_MAX_AGE + SEAT_MAP_STALE_WHILE_REVALIDATE
SEAT_MAP_CACHE_CONTROL = (
    f"public, max-age=0, s-maxage={SEAT_MAP_SHARED_MAX_AGE}, "
    f"stale-while-revalidate={SEAT_MAP_STALE_WHILE_REVALIDATE}"
)


def seat_map_etag(
    performance_id: int,
    version: int,
    view: str = "full",
    coding: str | None = None,
    since: int | None = None,
) -> str:
    """Weak, because it names the map's content, not its bytes: the seat map's version grows with every seat
    change of the performance and never repeats (redis_seats.py), so one version is one content. Each
    representation (view, content coding; a delta: the version it starts from) has its own tag, so a cache
    never answers one with another's; the full, uncompressed map keeps the tag it always had."""
    shown_view = f"since-{since}" if since is not None else (view if view != "full" else None)
    suffix = "".join(f"-{part}" for part in (shown_view, coding) if part)
    return f'W/"{performance_id}-{version}{suffix}"'


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
