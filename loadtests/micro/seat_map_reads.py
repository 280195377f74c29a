"""Micro-benchmark, no server: the server CPU of one seat-map read of a 5,000-seat performance through the app
as `make run` serves it (infra/local/wsgi.py's adapter around Chalice's LocalGateway), against `/ping`'s, for
each view and encoding (issue 15, item 1: a read should cost at most 2 × `/ping`).

The object graph is tests/support/offline.py's (real services and Redis adapters on fakeredis). fakeredis runs
Redis in this process, so the one version check a read makes costs far more CPU here than a real Redis round
trip does; the `cached` rows (SEAT_MAP_CACHE_SECONDS = 1: no Redis call at all) show the route's own cost.

    .venv/bin/python -m loadtests.micro.seat_map_reads [--requests 300]
"""

from __future__ import annotations

import argparse
import io
import time
import types

from chalice.config import Config
from chalice.local import LocalGateway

import app as application
from infra.local.wsgi import ChaliceWsgiAdapter, per_thread_request_state
from tests.support.offline import offline

SECTIONS, ROWS, SEATS_PER_ROW = 5, 20, 50  # 5,000 seats


def _adapter(map_cache_seconds: float) -> tuple[ChaliceWsgiAdapter, int]:
    graph = offline()
    graph.seat_state._map_cache_seconds = map_cache_seconds
    performance = graph.new_performance("db_lock", rows=ROWS, seats_per_row=SEATS_PER_ROW, sections=SECTIONS)
    first = performance.sections[0].first_seat_id
    for n in range(0, 400, 4):  # some seats booked, so the map is not uniform
        graph.booking_service.book(
            performance.performance_id, {"user_id": f"u{n}", "seat_ids": [first + n, first + n + 1]}, None
        )
    services = types.SimpleNamespace(catalogue=graph.catalogue, seat_state=graph.seat_state)
    application.container = lambda: services  # the routes look the container up at call time
    gateway = LocalGateway(per_thread_request_state(application.app), Config())
    return ChaliceWsgiAdapter(gateway, 1_000_000), performance.performance_id


def _get(adapter: ChaliceWsgiAdapter, path: str, query: str, headers: dict[str, str]) -> tuple[str, int]:
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": path, "QUERY_STRING": query, "wsgi.input": io.BytesIO()}
    environ.update({f"HTTP_{name.upper().replace('-', '_')}": value for name, value in headers.items()})
    status: list[str] = []
    body = b"".join(adapter(environ, lambda line, _headers: status.append(line)))
    return status[0], len(body)


def cpu_microseconds(adapter, path: str, query: str, headers: dict[str, str], requests: int) -> tuple:
    status, size = _get(adapter, path, query, headers)  # warm: the map rendered, the route's caches filled
    started = time.process_time()
    for _ in range(requests):
        _get(adapter, path, query, headers)
    return (time.process_time() - started) / requests * 1e6, status, size


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=300)
    args = parser.parse_args()
    gzip = {"Accept-Encoding": "gzip, deflate, br"}
    print("| read | CPU µs/request | × /ping | status | bytes |\n|---|---|---|---|---|")
    for label, cache_seconds in (("version checked", 0.0), ("cached", 1.0)):
        adapter, performance_id = _adapter(cache_seconds)
        seats = f"/performances/{performance_id}/seats"
        ping, _, _ = cpu_microseconds(adapter, "/ping", "", {}, args.requests * 10)
        print(f"| /ping ({label}) | {ping:.0f} | 1.0 | 200 | |")
        for view in ("", "view=compact"):
            for encoding in ({}, gzip):
                cpu, status, size = cpu_microseconds(adapter, seats, view, encoding, args.requests)
                name = f"{view or 'full'}{', gzip' if encoding else ''} ({label})"
                print(f"| {name} | {cpu:.0f} | {cpu / ping:.1f} | {status} | {size:,} |")


if __name__ == "__main__":
    main()
