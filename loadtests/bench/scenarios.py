"""The scenarios: what performance each run creates (through POST /admin/events, with the run's strategy) and
what the load generator sends to it.

    baseline       the hot-seat burst's size and concurrency against GET /ping (the same server, no work):
                   the HTTP ceiling; once per bench, not per strategy
    hot-seat       N booking requests for the same seat, one distinct user each, all created at once
    hot-section    N booking requests over the 200 seats of one section (of two), 1-4 adjacent seats each
    mixed-uniform  a fixed-duration closed-loop load on a 5,000-seat performance: 90 % seat-map reads,
                   10 % bookings of 1-4 adjacent seats, the first seat drawn uniformly
    mixed-zipf     the same, the first seat drawn from a Zipf law (s = 1.1) over the seats, the front rows of
                   the first section the most wanted
    drain          asynchronous strategies only: the consumers' own pace. N bookings of N distinct seats are
                   accepted while the worker process is paused (SIGSTOP), then it resumes (SIGCONT) and the
                   time until the last one is final in MySQL gives decisions persisted per second, to compare
                   with the emulator's receive + delete (or GetRecords) ceiling
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass

BASELINE = "baseline"
HOT_SEAT = "hot-seat"
HOT_SECTION = "hot-section"
MIXED_UNIFORM = "mixed-uniform"
MIXED_ZIPF = "mixed-zipf"
DRAIN = "drain"
SCENARIOS = (BASELINE, HOT_SEAT, HOT_SECTION, MIXED_UNIFORM, MIXED_ZIPF, DRAIN)
PER_STRATEGY = (HOT_SEAT, HOT_SECTION, MIXED_UNIFORM, MIXED_ZIPF, DRAIN)
MIXED = (MIXED_UNIFORM, MIXED_ZIPF)
STRATEGIES = ("db_lock", "redis_lock", "redis_async", "fifo_partition", "stream_state")
ASYNC_STRATEGIES = ("redis_async", "fifo_partition", "stream_state")

NOOP_PATH = "/ping"
READ_RATIO = 0.9
ZIPF_EXPONENT = 1.1
MAX_SEATS = 4


@dataclass(frozen=True)
class Layout:
    """A created performance: its id and its seats, row by row (seat ids in seat-number order)."""

    performance_id: int
    sections: list[list[list[int]]]  # section -> row -> seat ids

    @property
    def rows(self) -> list[list[int]]:
        return [row for section in self.sections for row in section]


def event_body(scenario: str, strategy: str) -> dict:
    if scenario == HOT_SEAT:
        sections = [{"name": "Floor", "price": 99_000, "rows": 10, "seats_per_row": 20}]
    elif scenario == HOT_SECTION:
        sections = [
            {"name": "Hot", "price": 150_000, "rows": 10, "seats_per_row": 20},
            {"name": "Calm", "price": 80_000, "rows": 10, "seats_per_row": 20},
        ]
    else:  # mixed: 5 x 25 x 40 = 5,000 seats
        sections = [
            {"name": f"S{i + 1}", "price": 200_000 - 30_000 * i, "rows": 25, "seats_per_row": 40}
            for i in range(5)
        ]
    return {
        "name": f"Bench {scenario} {strategy} {uuid.uuid4().hex[:6]}",
        "venue": "Bench Hall",
        "performances": [{"starts_at": "2027-01-15T19:30:00+09:00", "strategy": strategy}],
        "sections": sections,
    }


def layout_from_seat_map(seat_map: dict) -> Layout:
    sections = []
    for section in seat_map["sections"]:
        rows: dict[int, list[tuple[int, int]]] = {}
        for seat in section["seats"]:
            rows.setdefault(seat["row"], []).append((seat["number"], seat["seat_id"]))
        sections.append([[seat_id for _, seat_id in sorted(rows[r])] for r in sorted(rows)])
    return Layout(seat_map["performance_id"], sections)


def burst_requests(scenario: str, layout: Layout | None, count: int, tag: str, seed: int) -> list[list]:
    """[method, path, body] per request, in the order they are created."""
    if scenario == BASELINE:
        return [["GET", NOOP_PATH, None] for _ in range(count)]
    assert layout is not None
    path = f"/performances/{layout.performance_id}/bookings"
    if scenario == HOT_SEAT:
        seat = layout.sections[0][0][0]
        return [["POST", path, {"user_id": f"{tag}-{i}", "seat_ids": [seat]}] for i in range(count)]
    if scenario == DRAIN:
        seats = [seat for row in layout.rows for seat in row][:count]
        return [["POST", path, {"user_id": f"{tag}-{i}", "seat_ids": [seat]}] for i, seat in enumerate(seats)]
    if scenario == HOT_SECTION:
        rng = random.Random(seed)
        rows = layout.sections[0]
        requests = []
        for i in range(count):
            row = rows[rng.randrange(len(rows))]
            size = rng.randint(1, MAX_SEATS)
            start = rng.randrange(len(row) - size + 1)
            requests.append(["POST", path, {"user_id": f"{tag}-{i}", "seat_ids": row[start : start + size]}])
        return requests
    raise ValueError(f"{scenario} is not a burst")
