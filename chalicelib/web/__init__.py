"""The live seat-map page (`GET /`), served by the app itself: one HTML page, one stylesheet and one ES module
from this folder (no CDN, no build step). The page uses only the public API.

Assets are addressed with a digest of their content (`assets/app.js?v=<digest>`), so they may be cached for
good; the page itself is revalidated on every load (its ETag is the digest of what it names)."""

from __future__ import annotations

import hashlib
from functools import cache
from pathlib import Path

HERE = Path(__file__).resolve().parent
# Only these files are ever served: a name is looked up here, never joined onto a path.
ASSETS = {
    "app.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
}
ASSET_CACHE_CONTROL = "public, max-age=31536000, immutable"
PAGE_CACHE_CONTROL = "no-cache"
# The page runs no inline script and loads nothing from elsewhere.
PAGE_SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; base-uri 'none'; "
    "form-action 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


@cache
def asset(name: str) -> tuple[str, str] | None:
    """(content, content type) of a whitelisted asset, or None."""
    content_type = ASSETS.get(name)
    if content_type is None:
        return None
    return (HERE / name).read_text(encoding="utf-8"), content_type


@cache
def page(max_seats_per_booking: int) -> tuple[str, str]:
    """(HTML, ETag) of the page, naming each asset by its content's digest and telling the page the
    configured maximum of seats per booking."""
    html = (HERE / "index.html").read_text(encoding="utf-8")
    for name in ASSETS:
        html = html.replace(f"assets/{name}", f"assets/{name}?v={_digest(asset(name)[0])}")
    html = html.replace("{{max_seats_per_booking}}", str(max_seats_per_booking))
    return html, f'"{_digest(html)}"'


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]
