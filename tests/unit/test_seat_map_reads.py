"""Seat-map reads (issue 15, items 1, 3 and 4): each view's bytes made once per map version and shared across
processes through Redis; the compact view; gzip by Accept-Encoding; a version, an ETag per representation and
a Cache-Control for shared caches on every answer. Through the app as `make run` serves it (the WSGI adapter
around Chalice's LocalGateway), on the offline object graph."""

from __future__ import annotations

import base64
import gzip
import json

import pytest
from chalice.local import LocalGateway

from chalicelib import conditional
from chalicelib.adapters.fill_lock import RedisFillLock
from chalicelib.domain.models import Performance, SeatStatus, Section
from chalicelib.prepared import accepts_gzip
from chalicelib.services.seat_map_views import COMPACT, FULL, EncodedSeatMap
from chalicelib.services.seat_state import RENDERED_SHARE_SECONDS, SeatStateService
from tests.support.offline import PREFIX, Offline
from tests.support.wsgi_gets import book, get


# --- the compact view -----------------------------------------------------------------------------------
def test_the_compact_view_has_one_letter_per_seat_in_seat_id_order(system: Offline) -> None:
    performance = system.new_performance("redis_async", rows=2, seats_per_row=3, sections=2)
    first, second = performance.sections
    book(system, performance, first.first_seat_id + 1)  # held (PENDING) until its message is delivered
    book(system, performance, second.first_seat_id, second.first_seat_id + 5)
    system.deliver(system.booking_queue)  # the second booking confirmed: its seats booked

    compact = system.seat_state.encoded_map(performance).as_dict(COMPACT)

    assert [section["status"] for section in compact["sections"]] == ["AHAAAA", "BAAAAB"]
    assert compact["sections"][1] == {
        "section_id": second.section_id,
        "name": second.name,
        "price": second.price,
        "rows": 2,
        "seats_per_row": 3,
        "first_seat_id": second.first_seat_id,
        "status": "BAAAAB",
    }
    assert (compact["performance_id"], compact["strategy"]) == (performance.performance_id, "redis_async")


def test_the_compact_view_says_what_the_full_view_says(system: Offline) -> None:
    performance = system.new_performance("db_lock", rows=3, seats_per_row=4, sections=2)
    seats = performance.sections[0].first_seat_id
    book(system, performance, seats + 2, seats + 7)
    encoded = system.seat_state.encoded_map(performance)
    full, compact = encoded.as_dict(FULL), encoded.as_dict(COMPACT)

    letters = {"AVAILABLE": "A", "HELD": "H", "BOOKED": "B"}
    for full_section, compact_section in zip(full["sections"], compact["sections"], strict=True):
        assert compact_section["status"] == "".join(letters[s["status"]] for s in full_section["seats"])
    assert full["version"] == compact["version"] == encoded.version


def test_a_5000_seat_map_is_a_few_kb_in_the_compact_view() -> None:
    section = Section(1, 1, "Stalls", 50_000, rows=50, seats_per_row=100, first_seat_id=1)
    performance = Performance(1, 1, "2026-12-24T19:30:00+09:00", "redis_async", (section,))
    statuses = {seat: SeatStatus.BOOKED for seat in range(1, 5_001, 3)}
    compact = EncodedSeatMap.render(performance, 7, statuses).views[COMPACT]

    assert json.loads(compact.text)["sections"][0]["status"][:7] == "BAABAAB"
    assert len(compact.text) < 5_300
    assert len(base64.b64decode(compact.gzip_base64)) < 600


# --- rendered once, shared by every process -----------------------------------------------------------------
def test_a_second_process_sends_the_bytes_the_first_rendered_without_reading_the_seats(
    system: Offline,
) -> None:
    performance = system.new_performance("db_lock", rows=4, seats_per_row=5)
    book(system, performance, performance.sections[0].first_seat_id)
    first = system.seat_state.encoded_map(performance)
    key = system.seat_store.rendered_key(performance.performance_id, first.version)
    assert 0 < system.redis.ttl(key) <= RENDERED_SHARE_SECONDS

    other_process = SeatStateService(system.seat_store, system.bookings, RedisFillLock(system.redis, PREFIX))
    seat_reads = []
    real_read = system.seat_store.versioned_statuses
    system.seat_store.versioned_statuses = lambda pid: seat_reads.append(pid) or real_read(pid)  # type: ignore[method-assign]
    second = other_process.encoded_map(performance)

    assert seat_reads == [], "the seats were read and rendered again"
    assert second.version == first.version
    assert second.views == first.views


def test_a_reader_that_met_an_older_version_takes_the_newer_bytes_another_process_rendered(
    system: Offline,
) -> None:
    """During a rush the renderer renders the newest version: a reader that met an earlier one (never
    rendered) takes the current version's bytes once it has the render lock, instead of rendering."""
    performance = system.new_performance("db_lock")
    pid, seat = performance.performance_id, performance.sections[0].first_seat_id
    met = system.seat_store.version(pid)
    book(system, performance, seat)
    newest = system.seat_state.encoded_map(performance)  # another process renders the newer version
    assert newest.version > met

    other_process = SeatStateService(system.seat_store, system.bookings, RedisFillLock(system.redis, PREFIX))
    seen = iter([met])  # its version check happened just before the booking
    real_version = system.seat_store.loaded_version
    system.seat_store.loaded_version = lambda p: next(seen, None) or real_version(p)  # type: ignore[method-assign]
    seat_reads: list[int] = []
    real_read = system.seat_store.versioned_statuses
    system.seat_store.versioned_statuses = lambda p: seat_reads.append(p) or real_read(p)  # type: ignore[method-assign]

    taken = other_process.encoded_map(performance)
    assert seat_reads == []
    assert taken.version == newest.version and taken.as_dict(COMPACT)["sections"][0]["status"][0] == "B"


def test_a_change_is_a_new_version_rendered_anew(system: Offline) -> None:
    performance = system.new_performance("db_lock")
    before = system.seat_state.encoded_map(performance)
    book(system, performance, performance.sections[0].first_seat_id)
    after = system.seat_state.encoded_map(performance)

    assert after.version > before.version
    assert after.as_dict()["sections"][0]["seats"][0]["status"] == "BOOKED"
    assert after.as_dict(COMPACT)["sections"][0]["status"][0] == "B"


def test_an_incomplete_stored_rendering_is_not_used() -> None:
    assert EncodedSeatMap.of_stored(3, {FULL: base64.b64encode(gzip.compress(b"{}")).decode()}) is None


# --- gzip by Accept-Encoding ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("accept_encoding", "gzipped"),
    [
        (None, False),
        ("", False),
        ("gzip", True),
        ("GZip", True),
        ("x-gzip", True),
        ("gzip, deflate, br", True),
        ("br;q=1.0, gzip;q=0.8, *;q=0.1", True),
        ("*", True),
        ("gzip;q=0", False),
        ("gzip; q=0.000", False),
        ("identity", False),
        ("deflate, br", False),
        ("gzip;q=0.5", True),
        ("gzip;q=0.5, identity;q=0.6", False),
        ("gzip;q=0.5, *;q=0.6", False),
        ("gzip;q=0.5, identity;q=0.4", True),
        ("gzip;q=0.5, identity;q=0.5", True),
        ("identity;q=0, *;q=0.3", True),
        ("*;q=0", False),
        ("gzip;q=abc", False),
    ],
)
def test_gzip_is_sent_when_the_client_prefers_it(accept_encoding: str | None, gzipped: bool) -> None:
    assert accepts_gzip(accept_encoding) is gzipped


@pytest.mark.parametrize("view", ["", "?view=full", "?view=compact"])
def test_the_gzipped_answer_is_the_same_map(system: Offline, gateway: LocalGateway, view: str) -> None:
    performance = system.new_performance("db_lock", rows=3, seats_per_row=4)
    path = f"/performances/{performance.performance_id}/seats{view}"
    status, plain_headers, plain = get(gateway, path)
    gz_status, gz_headers, compressed = get(gateway, path, accept_encoding="gzip, deflate, br")

    assert (status, gz_status) == (200, 200)
    assert "content-encoding" not in plain_headers
    assert gz_headers["content-encoding"] == "gzip"
    assert plain_headers["vary"] == gz_headers["vary"] == "Accept-Encoding"
    assert plain_headers["content-type"] == gz_headers["content-type"] == "application/json"
    assert gzip.decompress(compressed) == plain
    assert int(gz_headers["content-length"]) == len(compressed)


def test_a_lambda_answer_carries_the_gzip_as_base64(system: Offline, gateway: LocalGateway) -> None:
    """What API Gateway gets: text for the plain map, the gzip in base64 flagged isBase64Encoded."""
    performance = system.new_performance("db_lock")
    path = f"/performances/{performance.performance_id}/seats"
    plain = gateway.handle_request("GET", path, {}, None)
    compressed = gateway.handle_request("GET", path, {"accept-encoding": "gzip"}, None)

    assert isinstance(plain["body"], str) and not plain.get("isBase64Encoded")
    assert compressed["isBase64Encoded"] is True
    assert gzip.decompress(base64.b64decode(compressed["body"])).decode() == plain["body"]


# --- version, ETag and Cache-Control on every answer -------------------------------------------------------
def test_every_view_carries_the_maps_version_and_the_full_view_keeps_its_fields(
    system: Offline, gateway: LocalGateway
) -> None:
    performance = system.new_performance("db_lock", rows=2, seats_per_row=2)
    path = f"/performances/{performance.performance_id}/seats"
    full = json.loads(get(gateway, path)[2])
    compact = json.loads(get(gateway, f"{path}?view=compact")[2])

    version = system.seat_store.version(performance.performance_id)
    assert full["version"] == compact["version"] == version
    assert set(full) == set(compact) == {"performance_id", "strategy", "version", "sections"}
    assert set(full["sections"][0]) == {"section_id", "name", "price", "available", "seats"}
    assert set(full["sections"][0]["seats"][0]) == {"seat_id", "row", "number", "status"}


def test_each_representation_has_its_own_etag_and_is_answered_304_for_it(
    system: Offline, gateway: LocalGateway
) -> None:
    performance = system.new_performance("db_lock")
    pid = performance.performance_id
    version = system.seat_store.version(pid)
    path = f"/performances/{pid}/seats"
    representations = {
        (path, ""): f'W/"{pid}-{version}"',
        (path, "gzip"): f'W/"{pid}-{version}-gzip"',
        (f"{path}?view=compact", ""): f'W/"{pid}-{version}-compact"',
        (f"{path}?view=compact", "gzip"): f'W/"{pid}-{version}-compact-gzip"',
    }
    for (url, encoding), etag in representations.items():
        status, headers, _ = get(gateway, url, accept_encoding=encoding)
        assert (status, headers["etag"]) == (200, etag)
        assert headers["cache-control"] == conditional.SEAT_MAP_CACHE_CONTROL
        status, headers, body = get(gateway, url, accept_encoding=encoding, if_none_match=etag)
        assert (status, body) == (304, b"")
        assert headers["etag"] == etag
        assert headers["cache-control"] == conditional.SEAT_MAP_CACHE_CONTROL
        assert headers["vary"] == "Accept-Encoding"
        assert "content-encoding" not in headers
        for other in set(representations.values()) - {etag}:
            assert get(gateway, url, accept_encoding=encoding, if_none_match=other)[0] == 200

    book(system, performance, performance.sections[0].first_seat_id)
    status, headers, _ = get(gateway, path, if_none_match=representations[(path, "")])
    assert status == 200 and headers["etag"] == f'W/"{pid}-{system.seat_store.version(pid)}"'


def test_shared_caches_may_keep_the_map_for_about_a_second_browsers_must_ask() -> None:
    directives = {d.strip() for d in conditional.SEAT_MAP_CACHE_CONTROL.split(",")}
    assert {"max-age=0", "s-maxage=1", "stale-while-revalidate=1"} <= directives
    assert conditional.SEAT_MAP_SHARED_SECONDS == 2, "docs/seat-map.md documents a 2 s bound"


@pytest.mark.parametrize("view", ["bogus", "FULL", ""])
def test_an_unknown_view_is_refused(system: Offline, gateway: LocalGateway, view: str) -> None:
    performance = system.new_performance("db_lock")
    status, _, body = get(gateway, f"/performances/{performance.performance_id}/seats?view={view}")
    assert status == 400
    assert json.loads(body)["error"]["code"] == "INVALID_REQUEST"
    assert json.loads(body)["error"]["field"] == "view"


def test_an_unknown_performance_is_still_404(gateway: LocalGateway) -> None:
    status, _, body = get(gateway, "/performances/987654/seats?view=compact", accept_encoding="gzip")
    assert status == 404
    assert json.loads(body)["error"]["code"] == "NOT_FOUND"
