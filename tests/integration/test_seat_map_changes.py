"""Seat-map deltas under real races, for every strategy (real MariaDB, Redis, SQS/Kinesis on the emulator): a
reader starts from the compact map and keeps applying `?since=` deltas while hundreds of threads book
overlapping seats, the consumers decide, and half of the winners cancel concurrently; what the reader ends
with is exactly the map a fresh read shows, which is exactly what MySQL holds. The change log is written in
the same Lua step as each seat change and its version, so no interleaving can make a reader miss a change."""

from __future__ import annotations

import json
import random
import threading

import pytest

from chalicelib.domain.errors import SeatUnavailable, VersionGone
from chalicelib.domain.models import Booking, BookingStatus
from tests.integration.test_races import STRATEGIES, race

pytestmark = pytest.mark.race
LETTERS = {"AVAILABLE": "A", "HELD": "H", "BOOKED": "B"}


class DeltaReader:
    """What the page does, as fast as it can: the compact map, then deltas from its version; a 410 reloads."""

    def __init__(self, services, performance_id: int) -> None:
        self._state = services.seat_state
        self._performance = services.catalogue.performance(performance_id)
        self.seats: dict[int, str] = {}
        self.version = 0
        self.deltas = self.reloads = 0
        self.errors: list[BaseException] = []
        self._reload()

    def _reload(self) -> None:
        compact = self._state.encoded_map(self._performance).as_dict("compact")
        self.seats = {
            section["first_seat_id"] + n: letter
            for section in compact["sections"]
            for n, letter in enumerate(section["status"])
        }
        self.version = compact["version"]

    def poll(self) -> None:
        try:
            changes = self._state.changes_since(self._performance, self.version)
        except VersionGone:
            self.reloads += 1
            self._reload()
            return
        if changes.view is not None:
            body = json.loads(changes.view.text)
            self.seats.update({c["seat_id"]: LETTERS[c["status"]] for c in body["changes"]})
            self.deltas += 1
        self.version = changes.version

    def run_until(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                self.poll()
            except BaseException as exc:
                self.errors.append(exc)
                return


def letters_in_mysql(sql, performance_id: int, seat_ids: list[int]) -> dict[int, str]:
    rows = sql(
        "SELECT bs.seat_id, b.status FROM booking_seats bs JOIN bookings b ON b.booking_id = bs.booking_id"
        " WHERE bs.performance_id = %s AND bs.active = 1",
        performance_id,
    )
    taken = {seat: "B" if status == "CONFIRMED" else "H" for seat, status in rows}
    return {seat: taken.get(seat, "A") for seat in seat_ids}


@pytest.mark.parametrize("frame_seconds", [0.0, 0.05], ids=["every-version", "frames"])
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_a_reader_of_deltas_ends_with_the_map_through_bookings_decisions_and_cancels(
    strategy, frame_seconds, services, new_performance, drain, sql, monkeypatch
) -> None:
    """every-version: each delta leads to the version current when it is read; frames: to the version of
    the render interval (SEAT_MAP_RENDER_SECONDS, short here), as in production."""
    monkeypatch.setattr(services.seat_state, "_render_seconds", frame_seconds)
    created = new_performance(strategy=strategy, rows=3, seats_per_row=10)
    pid, first = created["performance_id"], created["sections"][0]["first_seat_id"]
    seat_ids = list(range(first, first + 30))
    reader = DeltaReader(services, pid)
    stop = threading.Event()
    polling = threading.Thread(target=reader.run_until, args=(stop,))
    polling.start()
    try:
        rng = random.Random(20261202)
        wanted = [rng.sample(seat_ids, rng.randint(1, 3)) for _ in range(150)]
        book = services.booking_service.book
        outcomes, _ = race(
            [lambda i=i: book(pid, {"user_id": f"user-{i}", "seat_ids": wanted[i]}, None) for i in range(150)]
        )
        assert all(isinstance(o, Booking | SeatUnavailable) for o in outcomes), outcomes
        drain()
        get = services.booking_service.get
        accepted = [o for o in outcomes if isinstance(o, Booking)]
        won = [b for b in accepted if get(b.booking_id).status is BookingStatus.CONFIRMED]
        cancel = services.booking_service.cancel
        race([lambda b=b: cancel(b.booking_id, b.user_id) for b in won[::2]])
        drain()
    finally:
        stop.set()
        polling.join(timeout=30)
    current = services.seat_store.version(pid)
    while reader.version < current:  # the last changes, after every writer is done: within a frame or two
        reader.poll()

    assert reader.errors == []
    fresh = DeltaReader(services, pid)
    assert reader.version == fresh.version
    assert reader.seats == fresh.seats, "the deltas missed or garbled a change"
    assert fresh.seats == letters_in_mysql(sql, pid, seat_ids), "the map and MySQL disagree"
    assert reader.deltas > 0 and len(won) >= 2
    print(f"\n{strategy:15} {reader.deltas} deltas applied, {reader.reloads} reloads, {len(won)} won")
