"""The scenarios: what performance each run creates (through POST /admin/events, with the run's strategy) and
what the load generator sends to it.

    baseline       the hot-seat burst's size and concurrency against GET /ping (the same server, no work):
                   the HTTP ceiling; once per bench, not per strategy
    read-full      the same burst against GET /performances/{id}/seats of one 5,000-seat performance (made
                   with the first strategy benched; the read path does not depend on it), Accept-Encoding:
                   gzip, the map unchanged meanwhile: what a seat-map read costs next to /ping; once per bench
    read-compact   the same with ?view=compact
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
    crowd-solo     N booking requests of 1-4 adjacent seats over the front 200 seats (the first 5 rows of the
                   first section) of a 5,000-seat performance: hot-section's contention on the map a crowd
                   watches. Run right before `crowd` (selecting `crowd` selects it): its twin without viewers
    crowd          the same burst while V viewers (default 2,000) follow the map as the page does: a compact
                   read (gzip), then every second (after the answer, from a random phase) ?since=<version>
                   (304: unchanged; 200: apply the changes; 410: read the compact view again), from
                   generator process(es) of their own; after the drain every viewer's map must equal the
                   server's

On request only (`--scenarios hold-and-abandon`, `queue`; not in the default list, see ON_REQUEST):

    hold-and-abandon  a 2,000-seat performance (2 sections x 20 rows x 50 seats) on a stack whose holds last
                   HOLD_SECONDS = 20 s: C virtual users in closed loops (generator processes), each attempt a
                   person drawn from a pool of 10,000 asking to hold the best 1-4 seats of a random section;
                   a 202 is polled (GET /bookings/{id}) until it is no longer PENDING; a holder confirms with
                   probability 0.5 after a short think, else walks away and the hold expires; a refusal
                   (SEAT_UNAVAILABLE, USER_LIMIT) sends the person away. Ends when MySQL has every seat
                   CONFIRMED (or at a timeout: not sold out, which fails the run): time to sell out, holds
                   expired and their seats re-sold, p50/p99 of each call; audit: every seat sold exactly
                   once, nobody's confirmed seats over MAX_SEATS_PER_USER, Redis == MySQL
    queue          a performance with a waiting room (issue 18; `"waiting_room": {"admit_per_second": R}`,
                   R = 500, a seat per user): U = 10,000 signed-in users join its queue at once, read their
                   ticket as the page does (every second, or 50 ms after its eta when that is sooner) and,
                   once a read brings the admission token, book one seat of their own with it; then 100
                   more users join at the back and try to book before their turn, without an admission and
                   with another user's; then the same U users book the same seats of a twin performance
                   without a room, all at once (a burst). Admission rate achieved (client: first sight of
                   each token; server: the tickets' turns in Redis) against R, users admitted out of join
                   order, booking p50/p99 behind the room and without it, 403s to the unadmitted, MySQL's
                   bookings by users never admitted (waiting_room.py)
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
READ_FULL = "read-full"
READ_COMPACT = "read-compact"
CROWD_SOLO = "crowd-solo"
CROWD = "crowd"
HOLD_AND_ABANDON = "hold-and-abandon"
QUEUE = "queue"
SCENARIOS = (
    BASELINE,
    READ_FULL,
    READ_COMPACT,
    HOT_SEAT,
    HOT_SECTION,
    MIXED_UNIFORM,
    MIXED_ZIPF,
    DRAIN,
    CROWD_SOLO,
    CROWD,
)
ONCE = (BASELINE, READ_FULL, READ_COMPACT)  # once per bench, not per strategy
READS = (READ_FULL, READ_COMPACT)
# Selectable with --scenarios, never run by default: a hold-and-abandon run lasts as long as selling a
# 2,000-seat performance takes while half the holders walk away, about ten 20-second hold rounds (the unsold
# share halves each round) -- 4-5 minutes per strategy, 20-25 minutes for five, more than the rest of
# `make bench` (~15 min) together. It measures holds, not the hot path, so it is asked for when holds matter.
# `queue` (issue 18's waiting room) is on request too: ~2-3 minutes for one strategy (10,000 sign-ins, 20 s
# of admissions, then the same bookings without a room, two drains of 10,000 bookings), and it measures the
# room, not the strategies (it runs for --queue-strategies, default redis_async).
ON_REQUEST = (HOLD_AND_ABANDON, QUEUE)
ALL_SCENARIOS = SCENARIOS + ON_REQUEST
PER_STRATEGY = (HOT_SEAT, HOT_SECTION, MIXED_UNIFORM, MIXED_ZIPF, DRAIN, CROWD_SOLO, CROWD)
MIXED = (MIXED_UNIFORM, MIXED_ZIPF)
CROWDS = (CROWD_SOLO, CROWD)
# The burst the crowd watches: the front rows of the first section of the 5,000-seat map (5 x 40 = 200 seats,
# hot-section's count). Over the whole map every strategy would accept thousands of bookings, and stream_state
# (Kinesis puts of every accepted request, batched per server process since issue 16) would take minutes.
CROWD_HOT_ROWS = 5
# Left out of the full bench's crowd unless asked for (--crowd-strategies): stream_state's burst takes ~60 s
# and its drain ~2 min more on LocalStack's Kinesis (one PutRecord per accepted request and per decision),
# 6 minutes for the pair against ~30 s for the others; the smoke run keeps it (its deltas come from the
# ledger).
SLOW_CROWD_STRATEGIES = ("stream_state",)
STRATEGIES = ("db_lock", "redis_lock", "redis_async", "fifo_partition", "stream_state")
ASYNC_STRATEGIES = ("redis_async", "fifo_partition", "stream_state")

NOOP_PATH = "/ping"
GZIP_HEADERS = {"Accept-Encoding": "gzip"}
READ_RATIO = 0.9
ZIPF_EXPONENT = 1.1
MAX_SEATS = 4


@dataclass(frozen=True)
class Layout:
    """A created performance: its id and its seats, row by row (seat ids in seat-number order)."""

    performance_id: int
    sections: list[list[list[int]]]  # section -> row -> seat ids
    section_ids: tuple[int, ...] = ()  # in the same order

    @property
    def rows(self) -> list[list[int]]:
        return [row for section in self.sections for row in section]


@dataclass(frozen=True)
class HoldShape:
    """hold-and-abandon's performance and people (BenchProfile has one for the full run, one for --smoke)."""

    sections: int = 2
    rows: int = 20
    seats_per_row: int = 50
    users: int = 10_000  # the pool each attempt draws a person from (with replacement)

    @property
    def seats(self) -> int:
        return self.sections * self.rows * self.seats_per_row


# queue: sections of 25 x 40 seats, as many as it takes for a seat per user
QUEUE_SECTION_ROWS = 25
QUEUE_SECTION_SEATS_PER_ROW = 40


def queue_event_body(strategy: str, users: int, admit_per_second: int | None) -> dict:
    """The queue scenario's performance: a seat for each of `users`, with a waiting room admitting
    `admit_per_second` (None: its twin without a room)."""
    per_section = QUEUE_SECTION_ROWS * QUEUE_SECTION_SEATS_PER_ROW
    sections = [
        {
            "name": f"Q{i + 1}",
            "price": 100_000,
            "rows": QUEUE_SECTION_ROWS,
            "seats_per_row": QUEUE_SECTION_SEATS_PER_ROW,
        }
        for i in range(max(1, -(-users // per_section)))
    ]
    performance: dict = {"starts_at": "2027-01-15T19:30:00+09:00", "strategy": strategy}
    if admit_per_second is not None:
        performance["waiting_room"] = {"admit_per_second": admit_per_second}
    room = "room" if admit_per_second is not None else "no room"
    return {
        "name": f"Bench queue {strategy} {room} {uuid.uuid4().hex[:6]}",
        "venue": "Bench Hall",
        "performances": [performance],
        "sections": sections,
    }


def event_body(scenario: str, strategy: str, hold_shape: HoldShape | None = None) -> dict:
    if scenario == HOLD_AND_ABANDON:
        shape = hold_shape or HoldShape()
        sections = [
            {
                "name": f"H{i + 1}",
                "price": 120_000 - 20_000 * i,
                "rows": shape.rows,
                "seats_per_row": shape.seats_per_row,
            }
            for i in range(shape.sections)
        ]
    elif scenario == HOT_SEAT:
        sections = [{"name": "Floor", "price": 99_000, "rows": 10, "seats_per_row": 20}]
    elif scenario == HOT_SECTION:
        sections = [
            {"name": "Hot", "price": 150_000, "rows": 10, "seats_per_row": 20},
            {"name": "Calm", "price": 80_000, "rows": 10, "seats_per_row": 20},
        ]
    else:  # mixed, reads, crowds: 5 x 25 x 40 = 5,000 seats
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
    section_ids = tuple(section["section_id"] for section in seat_map["sections"])
    for section in seat_map["sections"]:
        rows: dict[int, list[tuple[int, int]]] = {}
        for seat in section["seats"]:
            rows.setdefault(seat["row"], []).append((seat["number"], seat["seat_id"]))
        sections.append([[seat_id for _, seat_id in sorted(rows[r])] for r in sorted(rows)])
    return Layout(seat_map["performance_id"], sections, section_ids)


def burst_requests(scenario: str, layout: Layout | None, count: int, tag: str, seed: int) -> list[list]:
    """[method, path, body] per request, in the order they are created."""
    if scenario == BASELINE:
        return [["GET", NOOP_PATH, None] for _ in range(count)]
    assert layout is not None
    if scenario in READS:
        query = "?view=compact" if scenario == READ_COMPACT else ""
        return [["GET", f"/performances/{layout.performance_id}/seats{query}", None] for _ in range(count)]
    path = f"/performances/{layout.performance_id}/bookings"
    if scenario == HOT_SEAT:
        seat = layout.sections[0][0][0]
        return [["POST", path, {"user_id": f"{tag}-{i}", "seat_ids": [seat]}] for i in range(count)]
    if scenario == DRAIN:
        seats = [seat for row in layout.rows for seat in row][:count]
        return [["POST", path, {"user_id": f"{tag}-{i}", "seat_ids": [seat]}] for i, seat in enumerate(seats)]
    if scenario in (HOT_SECTION, CROWD_SOLO, CROWD):
        rng = random.Random(seed)
        rows = layout.sections[0] if scenario == HOT_SECTION else layout.sections[0][:CROWD_HOT_ROWS]
        requests = []
        for i in range(count):
            row = rows[rng.randrange(len(rows))]
            size = rng.randint(1, MAX_SEATS)
            start = rng.randrange(len(row) - size + 1)
            requests.append(["POST", path, {"user_id": f"{tag}-{i}", "seat_ids": row[start : start + size]}])
        return requests
    raise ValueError(f"{scenario} is not a burst")
