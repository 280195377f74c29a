"""Seat-map deltas (issue 15, item 2): `GET /performances/{id}/seats?since=<version>` answers the seats whose
status changed after `since` from the performance's change log, which every Lua script that changes a seat
appends to in the same step as it bumps the version; 304 when nothing changed; 410 VERSION_GONE past the
bounded history, for a version the map never had, and after the map was rebuilt. On the offline object graph
(the project's Lua on fakeredis) and through the app as `make run` serves it."""

from __future__ import annotations

import gzip
import json

import pytest
from chalice.local import LocalGateway

from chalicelib.adapters.fill_lock import RedisFillLock
from chalicelib.domain.errors import InvalidRequest, VersionGone
from chalicelib.domain.models import BookingStatus, Performance, SeatStatus
from chalicelib.domain.seat_holds import BookingRecord
from chalicelib.domain.seat_map import changes_after
from chalicelib.services.seat_map_views import GZIP_FROM_BYTES, parse_since
from chalicelib.services.seat_state import SeatStateService
from tests.support.offline import PREFIX, Offline
from tests.support.wsgi_gets import book, get

AVAILABLE, HELD, BOOKED = SeatStatus.AVAILABLE, SeatStatus.HELD, SeatStatus.BOOKED


def changes(system: Offline, performance: Performance, since: int) -> tuple[int, dict[int, SeatStatus]]:
    """(version now, seat -> status) from the service, as the route answers it."""
    encoded = system.seat_state.changes_since(performance, since)
    if encoded.view is None:
        return encoded.version, {}
    body = json.loads(encoded.view.text)
    return body["version"], {c["seat_id"]: SeatStatus(c["status"]) for c in body["changes"]}


def record(performance: Performance, booking_id: str, *seats: int) -> BookingRecord:
    return BookingRecord(
        booking_id=booking_id,
        performance_id=performance.performance_id,
        user_id="ann",
        seat_ids=tuple(seats),
        strategy="redis_async",
        status=BookingStatus.PENDING,
    )


# --- the change log: every script writes it with the version ---------------------------------------------
def test_every_seat_changing_script_logs_its_seats_with_the_version(system: Offline) -> None:
    performance = system.new_performance("redis_async", rows=2, seats_per_row=5)
    pid, first = performance.performance_id, performance.sections[0].first_seat_id
    store = system.seat_store
    start = system.seat_state.encoded_map(performance).version

    store.reserve(record(performance, "b1", first, first + 1))  # reserve_seats.lua: held
    after_take = store.version(pid)
    assert changes(system, performance, start) == (after_take, {first: HELD, first + 1: HELD})

    store.confirm("b1", pid, [first, first + 1])  # confirm_seats.lua: booked
    assert changes(system, performance, after_take) == (after_take + 1, {first: BOOKED, first + 1: BOOKED})

    store.release("b1", pid, [first])  # release_seats.lua: free again
    assert changes(system, performance, after_take + 1) == (after_take + 2, {first: AVAILABLE})

    store.replace(pid, [(first + 2, "0", "H:b2"), (first + 3, "0", "B:b3")])  # replace_seats.lua
    assert changes(system, performance, after_take + 2) == (
        after_take + 3,
        {first + 2: HELD, first + 3: BOOKED},
    )

    # Over the whole run, the last status of each seat wins; a seat that changed back is named as it is now.
    assert changes(system, performance, start) == (
        after_take + 3,
        {first: AVAILABLE, first + 1: BOOKED, first + 2: HELD, first + 3: BOOKED},
    )


def test_a_script_that_changes_no_seat_neither_bumps_the_version_nor_logs(system: Offline) -> None:
    performance = system.new_performance("redis_async", rows=1, seats_per_row=4)
    pid, first = performance.performance_id, performance.sections[0].first_seat_id
    version = system.seat_state.encoded_map(performance).version

    assert system.seat_store.release("nobody", pid, [first]) == 0
    assert system.seat_store.replace(pid, [(first, "B:x", "0")]) == 0  # the compare fails

    assert system.seat_store.version(pid) == version
    assert system.redis.llen(system.seat_store.changes_key(pid)) == 0
    assert system.seat_state.changes_since(performance, version).view is None  # 304


def test_a_loader_that_loses_the_publish_race_changes_nothing(system: Offline) -> None:
    performance = system.new_performance("redis_async", rows=1, seats_per_row=4)
    pid = performance.performance_id
    version = system.seat_state.encoded_map(performance).version
    book(system, performance, performance.sections[0].first_seat_id)
    before = (system.seat_store.version(pid), system.redis.lrange(system.seat_store.changes_key(pid), 0, -1))

    assert system.seat_store.load_performance(pid, performance.seat_ids, {}) is False

    after = (system.seat_store.version(pid), system.redis.lrange(system.seat_store.changes_key(pid), 0, -1))
    assert after == before and before[0] == version + 1


# --- 410: where the log cannot say --------------------------------------------------------------------------
def test_the_history_is_bounded_and_a_reader_behind_it_is_told_to_reload(system: Offline) -> None:
    system.seat_store._history = 3  # the bound, small (CHANGE_HISTORY in production)
    performance = system.new_performance("redis_async", rows=1, seats_per_row=10)
    pid, first = performance.performance_id, performance.sections[0].first_seat_id
    start = system.seat_state.encoded_map(performance).version
    for n in range(5):
        system.seat_store.reserve(record(performance, f"b{n}", first + n))

    assert system.redis.llen(system.seat_store.changes_key(pid)) == 3
    with pytest.raises(VersionGone):
        system.seat_state.changes_since(performance, start)  # 5 versions behind: the log keeps 3
    with pytest.raises(VersionGone):
        system.seat_state.changes_since(performance, start + 1)
    assert changes(system, performance, start + 2) == (
        start + 5,
        {first + 2: HELD, first + 3: HELD, first + 4: HELD},
    )


def test_a_version_newer_than_the_map_or_from_before_a_rebuild_is_gone(system: Offline) -> None:
    performance = system.new_performance("redis_async", rows=1, seats_per_row=4)
    pid = performance.performance_id
    old = system.seat_state.encoded_map(performance).version
    with pytest.raises(VersionGone):
        system.seat_state.changes_since(performance, old + 1)

    system.seat_store.forget_performance(pid)  # Redis lost the map
    with pytest.raises(VersionGone):  # not loaded: there is no history to answer from
        system.seat_state.changes_since(performance, old)
    rebuilt = system.seat_state.encoded_map(performance).version  # a reader of the whole map rebuilds it
    assert rebuilt > old
    with pytest.raises(VersionGone):  # the rebuilt map's history starts at its own version
        system.seat_state.changes_since(performance, old)
    assert system.seat_state.changes_since(performance, rebuilt).view is None


def test_a_log_that_skips_a_version_is_not_trusted() -> None:
    assert changes_after(10, 12, ["11 5=H", "12 5=B 6=B"]) == {5: BOOKED, 6: BOOKED}
    assert changes_after(10, 12, ["12 5=B"]) is None  # 11 missing
    assert changes_after(10, 13, ["11 5=H", "12 5=B"]) is None  # does not reach the version
    assert changes_after(10, 11, ["11 7=A"]) == {7: AVAILABLE}


@pytest.mark.parametrize("raw", ["", "-1", "1.5", "abc", "1e9", "1" * 19, "١٢", " 12", "0x10"])
def test_since_must_be_a_version(raw: str) -> None:
    with pytest.raises(InvalidRequest) as refused:
        parse_since(raw)
    assert refused.value.extra == {"field": "since"}


def test_since_accepts_versions_and_its_absence() -> None:
    assert (parse_since(None), parse_since("0"), parse_since("1796233345689001")) == (
        None,
        0,
        1796233345689001,
    )


# --- through the route ------------------------------------------------------------------------------------
def test_the_route_answers_changes_304_410_and_400(system: Offline, gateway: LocalGateway) -> None:
    performance = system.new_performance("redis_async", rows=2, seats_per_row=5)
    pid, first = performance.performance_id, performance.sections[0].first_seat_id
    status, headers, body = get(gateway, f"/performances/{pid}/seats?view=compact")
    version = json.loads(body)["version"]
    book(system, performance, first + 3, first + 4)

    status, headers, body = get(gateway, f"/performances/{pid}/seats?since={version}", accept_encoding="gzip")
    answer = json.loads(body)
    assert status == 200
    assert answer == {
        "performance_id": pid,
        "version": version + 1,
        "changes": [{"seat_id": first + 3, "status": "HELD"}, {"seat_id": first + 4, "status": "HELD"}],
    }
    assert "content-encoding" not in headers  # too small to be worth compressing
    assert headers["etag"] == f'W/"{pid}-{version + 1}-since-{version}"'
    assert headers["cache-control"].startswith("public, max-age=0, s-maxage=1")
    assert headers["vary"] == "Accept-Encoding"
    assert headers["content-type"] == "application/json"

    status, headers, body = get(gateway, f"/performances/{pid}/seats?since={version + 1}")
    assert (status, body) == (304, b"")
    assert headers["etag"] == f'W/"{pid}-{version + 1}-since-{version + 1}"'

    status, _, body = get(
        gateway,
        f"/performances/{pid}/seats?since={version}",
        if_none_match=f'W/"{pid}-{version + 1}-since-{version}"',
    )
    assert (status, body) == (304, b"")

    status, _, body = get(gateway, f"/performances/{pid}/seats?since={version - 1}")
    assert status == 410
    assert json.loads(body)["error"]["code"] == "VERSION_GONE"

    status, _, body = get(gateway, f"/performances/{pid}/seats?since=yesterday")
    assert status == 400
    assert json.loads(body)["error"] == {
        "code": "INVALID_REQUEST",
        "message": json.loads(body)["error"]["message"],
        "field": "since",
    }
    status, _, body = get(gateway, f"/performances/{pid}/seats?since={version}&view=tiny")
    assert (status, json.loads(body)["error"]["field"]) == (400, "view")


def test_a_large_delta_is_gzipped_for_a_client_that_takes_gzip(
    system: Offline, gateway: LocalGateway
) -> None:
    performance = system.new_performance("redis_async", rows=10, seats_per_row=20)
    pid, first = performance.performance_id, performance.sections[0].first_seat_id
    version = system.seat_state.encoded_map(performance).version
    for n in range(0, 120, 4):
        book(system, performance, *range(first + n, first + n + 4))

    status, headers, body = get(gateway, f"/performances/{pid}/seats?since={version}", accept_encoding="gzip")
    plain = gzip.decompress(body)
    assert (status, headers["content-encoding"]) == (200, "gzip")
    assert len(plain) >= GZIP_FROM_BYTES > len(body)
    assert len(json.loads(plain)["changes"]) == 120
    assert headers["etag"].endswith('-gzip"')
    _, plain_headers, plain_body = get(gateway, f"/performances/{pid}/seats?since={version}")
    assert plain_body == plain and "content-encoding" not in plain_headers


def test_a_map_and_its_deltas_add_up_to_the_map_now(system: Offline) -> None:
    """What a page does: read the compact map once, then apply deltas; it ends where a fresh read is."""
    performance = system.new_performance("redis_async", rows=3, seats_per_row=6)
    first = performance.sections[0].first_seat_id
    compact = system.seat_state.encoded_map(performance).as_dict("compact")
    letters = {"A": AVAILABLE, "H": HELD, "B": BOOKED}
    seen = {first + n: letters[c] for n, c in enumerate(compact["sections"][0]["status"])}
    version = compact["version"]
    for step, seats in enumerate([[first], [first + 5, first + 6], [first + 9], [first + 17]]):
        book(system, performance, *seats)
        if step % 2:
            system.deliver(system.booking_queue)  # some held seats become booked
        version, changed = changes(system, performance, version)
        seen.update(changed)

    fresh = system.seat_state.encoded_map(performance).as_dict("compact")
    assert fresh["version"] == version
    assert (
        "".join({AVAILABLE: "A", HELD: "H", BOOKED: "B"}[seen[first + n]] for n in range(18))
        == fresh["sections"][0]["status"]
    )


# --- the render interval: a rush of changes is not a render per read ----------------------------------------
def test_within_the_render_interval_every_process_serves_the_version_rendered_last(system: Offline) -> None:
    performance = system.new_performance("redis_async", rows=2, seats_per_row=5)
    pid, first = performance.performance_id, performance.sections[0].first_seat_id
    system.seat_state._render_seconds = 60  # the interval, long enough not to pass during the test
    rendered = system.seat_state.encoded_map(performance)
    other_process = SeatStateService(
        system.seat_store, system.bookings, RedisFillLock(system.redis, PREFIX), render_seconds=60
    )
    book(system, performance, first)
    book(system, performance, first + 1)
    renders: list[int] = []
    real_read = system.seat_store.versioned_statuses
    system.seat_store.versioned_statuses = lambda p: renders.append(p) or real_read(p)  # type: ignore[method-assign]

    for service in (system.seat_state, other_process):
        assert service.encoded_map(performance).version == rendered.version
    assert renders == [], "a map was rendered within the render interval"
    # The map it serves names its own version (the frame); deltas lead to the frame too: nothing to tell yet.
    system.seat_state._render_seconds = 60
    assert changes(system, performance, rendered.version) == (rendered.version, {})

    system.redis.delete(system.seat_store.frame_key(pid))  # the interval has passed
    # Nothing was lost: the next frame's delta from the served version has both seats.
    assert changes(system, performance, rendered.version)[1] == {first: HELD, first + 1: HELD}
    system.redis.delete(system.seat_store.frame_key(pid))
    newest = other_process.encoded_map(performance)
    assert newest.version == rendered.version + 2
    assert newest.as_dict("compact")["sections"][0]["status"] == "HHAAAAAAAA"
    assert renders == [pid]
    assert 0 < system.redis.pttl(system.seat_store.frame_key(pid)) <= 60_000


def test_with_no_render_interval_every_read_shows_the_newest_version(system: Offline) -> None:
    performance = system.new_performance("redis_async", rows=1, seats_per_row=4)
    first = performance.sections[0].first_seat_id
    assert system.seat_state._render_seconds == 0
    system.seat_state.encoded_map(performance)
    book(system, performance, first)
    assert system.seat_state.encoded_map(performance).as_dict("compact")["sections"][0]["status"] == "HAAA"
    assert not system.redis.exists(system.seat_store.frame_key(performance.performance_id))


def test_readers_of_deltas_in_one_render_interval_are_led_to_one_version(system: Offline) -> None:
    """So that next time they send the same `since` and share one answer (a CDN's, a process's)."""
    performance = system.new_performance("redis_async", rows=2, seats_per_row=5)
    pid, first = performance.performance_id, performance.sections[0].first_seat_id
    start = system.seat_state.encoded_map(performance).version
    system.seat_state._render_seconds = 60
    book(system, performance, first)
    early_version, early = changes(system, performance, start)  # the first reader of the interval: its frame
    book(system, performance, first + 1)
    late_version, late = changes(system, performance, start)  # a later reader, the same interval

    assert early_version == late_version == start + 1
    assert early == late == {first: HELD}
    # A reader ahead of the frame (it read a newer map) is told nothing yet, and keeps its own version.
    assert system.seat_state.changes_since(performance, start + 2).view is None
    assert system.seat_state.changes_since(performance, start + 2).version == start + 2
    with pytest.raises(VersionGone):  # ahead of the map itself: never a version of it
        system.seat_state.changes_since(performance, start + 3)

    system.redis.delete(system.seat_store.frame_key(pid))  # the next interval
    assert changes(system, performance, start + 1) == (start + 2, {first + 1: HELD})


def test_a_process_answers_a_since_from_memory_within_the_cache_window(system: Offline) -> None:
    performance = system.new_performance("redis_async", rows=1, seats_per_row=5)
    first = performance.sections[0].first_seat_id
    start = system.seat_state.encoded_map(performance).version
    system.seat_state._map_cache_seconds = 1.0
    book(system, performance, first)
    answered = system.seat_state.changes_since(performance, start)
    book(system, performance, first + 1)
    reads: list[int] = []
    real_read = system.seat_store.changes_since
    system.seat_store.changes_since = lambda *args: reads.append(args[1]) or real_read(*args)  # type: ignore[method-assign]

    assert system.seat_state.changes_since(performance, start) is answered  # 0 s later: from memory
    assert reads == []
    system.clock.advance(1.0)
    assert changes(system, performance, start) == (start + 2, {first: HELD, first + 1: HELD})
    assert reads == [start]
