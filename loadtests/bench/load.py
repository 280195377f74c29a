"""The load generator: one process of its own (never the server's), asyncio on aiohttp.

    python -m loadtests.bench.load SPEC.json OUT.json

It reads its plan, opens nothing yet, prints `ready` and waits for a line on stdin (the orchestrator starts
every generator process first and then releases them together), runs the plan, writes what it saw to OUT and
prints `done`. Two kinds of plan:

* burst: every request of the list is created at once (one coroutine each, `asyncio.gather`); at most
  `concurrency` of them hold a connection at a time (an `asyncio.Semaphore` of that size in front of an
  aiohttp connector with the same limit), the rest wait their turn in the client. A request's latency runs
  from the moment it got its slot to the last byte of the answer; `queued_ms` is how long it waited for it.
* mixed: `concurrency` virtual users in closed loops for `duration` seconds; each request is a seat-map read
  with probability `read_ratio`, else a booking of 1-4 adjacent seats of one row, the row and first seat
  drawn uniformly or from a Zipf law over the seats (seat 0 the most wanted).

The process measures its own CPU time (getrusage) so the report can tell whether the generator, not the
server, was the limit. Output is column-wise lists, one entry per request, in plan order (burst) or in
completion order (mixed).
"""

from __future__ import annotations

import asyncio
import bisect
import json
import random
import resource
import sys
import time
from itertools import accumulate
from typing import Any

import aiohttp

try:
    import uvloop
except ImportError:  # the standard loop works too, at a higher CPU cost per request
    uvloop = None

TRANSPORT_ERROR = -1  # connection refused, reset, protocol error
TIMEOUT = -2
JSON_HEADERS = {"Content-Type": "application/json"}


def raise_fd_limit(wanted: int) -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, wanted)
    target = max(soft, min(target, max(wanted, soft)))
    if target > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class Recorder:
    def __init__(self) -> None:
        self.kind: list[str] = []
        self.status: list[int] = []
        self.latency_ms: list[float] = []
        self.queued_ms: list[float] = []
        self.sent_at: list[float] = []  # epoch seconds (compared with MySQL's timestamps: same machine clock)
        self.done_at: list[float] = []  # seconds since the start signal
        self.booking_id: list[str | None] = []
        self.seat_ids: list[list[int] | None] = []

    def add(self, kind, status, latency, queued, sent_at, done_at, booking_id, seat_ids) -> None:
        self.kind.append(kind)
        self.status.append(status)
        self.latency_ms.append(round(latency * 1000, 3))
        self.queued_ms.append(round(queued * 1000, 3))
        self.sent_at.append(round(sent_at, 6))
        self.done_at.append(round(done_at, 6))
        self.booking_id.append(booking_id)
        self.seat_ids.append(seat_ids)

    def to_dict(self) -> dict[str, list]:
        return dict(vars(self))


EXPECTED = (200, 201, 202, 409)
SAMPLES_KEPT = 5
error_samples: list[dict] = []  # the first answers of unexpected statuses, to say what went wrong


async def _call(
    session: aiohttp.ClientSession, method: str, path: str, body: bytes | None
) -> tuple[int, str | None]:
    """-> (status, booking id of a 201/202)."""
    try:
        async with session.request(
            method, path, data=body, headers=JSON_HEADERS if body is not None else None
        ) as response:
            payload = await response.read()
            status = response.status
    except TimeoutError:
        return TIMEOUT, None
    except (aiohttp.ClientError, OSError):
        return TRANSPORT_ERROR, None
    if status not in EXPECTED and len(error_samples) < SAMPLES_KEPT:
        error_samples.append(
            {
                "status": status,
                "request": (body or b"")[:300].decode(errors="replace"),
                "answer": payload[:300].decode(errors="replace"),
            }
        )
    booking_id = None
    if status in (201, 202) and method == "POST" and "/bookings" in path:
        try:
            booking_id = json.loads(payload).get("booking_id")
        except ValueError:
            booking_id = None
    return status, booking_id


def _session(spec: dict) -> aiohttp.ClientSession:
    connector = aiohttp.TCPConnector(limit=spec["concurrency"], limit_per_host=0, ttl_dns_cache=None)
    timeout = aiohttp.ClientTimeout(total=spec["timeout"])
    return aiohttp.ClientSession(spec["base_url"], connector=connector, timeout=timeout)


async def run_burst(spec: dict, started: float, recorder: Recorder) -> None:
    slots = asyncio.Semaphore(spec["concurrency"])
    requests = spec["requests"]
    results: list[tuple | None] = [None] * len(requests)

    async def one(index: int, method: str, path: str, body: Any) -> None:
        created = time.perf_counter()
        payload = json.dumps(body).encode() if body is not None else None
        async with slots:
            sent = time.perf_counter()
            sent_at = time.time()
            status, booking_id = await _call(session, method, path, payload)
            done = time.perf_counter()
        seats = body.get("seat_ids") if isinstance(body, dict) else None
        results[index] = (
            "burst",
            status,
            done - sent,
            sent - created,
            sent_at,
            done - started,
            booking_id,
            seats,
        )

    async with _session(spec) as session:
        await asyncio.gather(*(one(i, *request) for i, request in enumerate(requests)))
    for result in results:
        recorder.add(*result)


def zipf_cdf(count: int, exponent: float) -> list[float]:
    weights = [1.0 / (rank**exponent) for rank in range(1, count + 1)]
    total = sum(weights)
    return [value / total for value in accumulate(weights)]


async def run_mixed(spec: dict, started: float, recorder: Recorder) -> None:
    rng = random.Random(spec["seed"])
    rows: list[list[int]] = spec["rows"]
    seats = [(r, i) for r, row in enumerate(rows) for i in range(len(row))]  # seat rank -> (row, index)
    cdf = zipf_cdf(len(seats), spec["zipf_exponent"]) if spec["distribution"] == "zipf" else None
    map_path = f"/performances/{spec['performance_id']}/seats"
    book_path = f"/performances/{spec['performance_id']}/bookings"
    deadline = started + spec["duration"]
    user_counter = iter(range(10**9))

    def pick_seats() -> list[int]:
        if cdf is None:
            row, index = seats[rng.randrange(len(seats))]
        else:
            row, index = seats[min(bisect.bisect_left(cdf, rng.random()), len(seats) - 1)]
        count = rng.randint(1, spec["max_seats"])
        start = max(0, min(index, len(rows[row]) - count))
        return rows[row][start : start + count]

    async def user(number: int) -> None:
        while True:
            now = time.perf_counter()
            if now >= deadline:
                return
            if rng.random() < spec["read_ratio"]:
                kind, method, path, body = "read", "GET", map_path, None
            else:
                user_id = f"{spec['user_prefix']}-{number}-{next(user_counter)}"
                seat_ids = pick_seats()
                body = {"user_id": user_id, "seat_ids": seat_ids}
                kind, method, path = "book", "POST", book_path
            sent_at = time.time()
            status, booking_id = await _call(
                session, method, path, json.dumps(body).encode() if body is not None else None
            )
            done = time.perf_counter()
            recorder.add(
                kind,
                status,
                done - now,
                0.0,
                sent_at,
                done - started,
                booking_id,
                body["seat_ids"] if body else None,
            )

    async with _session(spec) as session:
        await asyncio.gather(*(user(n) for n in range(spec["concurrency"])))


def main(argv: list[str]) -> int:
    spec_file, out_file = argv
    with open(spec_file) as f:
        spec = json.load(f)
    fd_limit = raise_fd_limit(spec["concurrency"] + 256)
    print("ready", flush=True)
    sys.stdin.readline()
    recorder = Recorder()
    cpu_before = cpu_seconds()
    started = time.perf_counter()
    runner = run_burst if spec["kind"] == "burst" else run_mixed
    if spec.get("uvloop", True) and uvloop is not None:
        uvloop.run(runner(spec, started, recorder))  # about a third less CPU per request than asyncio's loop
    else:
        asyncio.run(runner(spec, started, recorder))
    wall = time.perf_counter() - started
    cpu = cpu_seconds() - cpu_before
    with open(out_file, "w") as f:
        json.dump(
            {
                "event_loop": "uvloop" if spec.get("uvloop", True) and uvloop is not None else "asyncio",
                "wall_seconds": wall,
                "cpu_seconds": cpu,
                "fd_limit": fd_limit,
                "concurrency": spec["concurrency"],
                "error_samples": error_samples,
                **recorder.to_dict(),
            },
            f,
        )
    print("done", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
