"""GETs through the app as `make run` serves it (infra/local/wsgi.py's adapter around Chalice's LocalGateway),
for the unit tests of the seat map's reads; the `gateway` fixture (tests/unit/conftest.py) builds it on the
offline object graph."""

from __future__ import annotations

import io

from chalice.local import LocalGateway

from chalicelib.domain.models import Performance
from infra.local.wsgi import ChaliceWsgiAdapter
from tests.support.offline import Offline

Answer = tuple[int, dict[str, str], bytes]


def get(gateway: LocalGateway, path: str, **headers: str) -> Answer:
    """A GET through the local server's WSGI adapter: status, headers (names lower-cased), body bytes."""
    route, _, query = path.partition("?")
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": route, "QUERY_STRING": query, "wsgi.input": io.BytesIO()}
    environ.update({f"HTTP_{name.upper()}": value for name, value in headers.items()})
    started: list = []
    body = b"".join(ChaliceWsgiAdapter(gateway, 10_000)(environ, lambda *answer: started.extend(answer)))
    status, header_list = started
    return int(status.split()[0]), {name.lower(): value for name, value in header_list}, body


def book(system: Offline, performance: Performance, *seat_ids: int) -> None:
    system.booking_service.book(
        performance.performance_id, {"user_id": "ann", "seat_ids": list(seat_ids)}, None
    )
