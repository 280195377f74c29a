"""The load generator: one process of its own (never the server's), asyncio on aiohttp.

    python -m loadtests.bench.load SPEC.json OUT.json

It reads its plan, opens nothing yet, prints `ready` and waits for a line on stdin (the orchestrator starts
every generator process first and then releases them together), runs the plan, writes what it saw to OUT and
prints `done`. Three kinds of plan:

* burst: every request of the list is created at once (one coroutine each, `asyncio.gather`); at most
  `concurrency` of them hold a connection at a time (an `asyncio.Semaphore` of that size in front of an
  aiohttp connector with the same limit), the rest wait their turn in the client. A request's latency runs
  from the moment it got its slot to the last byte of the answer; `queued_ms` is how long it waited for it.
* mixed: `concurrency` virtual users in closed loops for `duration` seconds; each request is a seat-map read
  with probability `read_ratio`, else a booking of 1-4 adjacent seats of one row, the row and first seat
  drawn uniformly or from a Zipf law over the seats (seat 0 the most wanted).
* viewers: `viewers` people following one performance's seat map as the page does (chalicelib/web/app.js),
  each from a random phase: a compact read (`?view=compact`), then, `interval` seconds after each answer,
  `?view=compact&since=<version>` (304: unchanged; 200: the changes applied to its own copy of the map; 410:
  the compact view read again at once), every read with `Accept-Encoding: gzip` and no If-None-Match (the
  page fetches with no-store; bodies kept as they came, gzip decompressed here). Released by
  `go`, they follow until a `stop` line (then the process prints `stopped`); a `final` line then makes every
  viewer poll once more and report its copy (version, digest of the status letters) so the orchestrator can
  compare it with the server's map; `exit` skips that.
* holds (hold-and-abandon): `concurrency` virtual users in closed loops until a `stop` line (the orchestrator
  sends it once MySQL has every seat CONFIRMED) or `duration` seconds. Each attempt: a pause (uniform, 0 to
  2 x `pause` seconds: the next person arriving), a person drawn from the pool `user_prefix`-0 ..
  -(`users` - 1) (a token each in `tokens`), POST a best-available hold (`section_id` random, `count` 1-4,
  `"hold": true`); a 202 is polled with GET /bookings/{id} (as its owner: anyone else's read is a 404) every
  `poll_interval` seconds until it is no longer PENDING; a HELD booking is confirmed with probability
  `confirm_ratio` after a think (uniform `think` = [min, max] seconds: POST /bookings/{id}/confirm as its
  owner), else left to expire. A 409 (or an in-line REJECTED) sends the person away. Besides every request
  (kind hold, poll, confirm), one entry per attempt in `attempts`.
* queue (issue 18's waiting room): every user of `users` ([user, token, seat], a share of the run's) joins
  the performance's queue at once (POST …/queue; latency from the slot, as a burst's), then reads its ticket
  as the page does (chalicelib/web/app.js): `poll_interval` seconds after each answer, or `poll_early` after
  its `eta_seconds` when that is sooner; the read that brings `admission_token` is the user's admission (its
  answer's arrival: `seen_at`), and the user books its `seat` at once with it (`X-Admission-Token`) through a
  pool of its own (`book_concurrency` connections; a booking never waits behind the polls in the client).
  Once every join of the process is answered it prints `joined`; a `crash` line then sends the `crashers`
  (the same shape) in: each joins (at the back of the queue) and at once tries to book its seat without an
  admission (kind `crash-none`), then with the first admission token this process saw, another user's
  (`crash-borrowed`), and leaves (never reads its ticket: never admitted). One entry per user in `people`,
  per crasher attempt in `crashes`. Joins and reads share `concurrency` connections.

Burst specs may add `headers` (sent with every request) and `auto_decompress: false` (bodies kept as they
came: the byte counts are what crossed the wire, and the generator spends no CPU inflating them).

Every booking call is made as a signed-in user (`Authorization: Bearer`, docs/api.md#identity). The
orchestrator signed every user of the plan in before starting this process (signin.py), so no sign-in is
ever timed here; the plan carries the tokens: a burst's `tokens` {user_id: token} for the user_id of each
request's body; a mixed plan's and a holds plan's `tokens`, one per person, person n being
`user_prefix`-n. A mixed booking is made by a person of its own, as before tokens: each virtual user has
its share of the people (every `concurrency`-th); past its share it starts over (counted in
`people_reused`: a reused person may be refused for MAX_SEATS_PER_USER).

The process measures its own CPU time (getrusage) so the report can tell whether the generator, not the
server, was the limit. Output is column-wise lists, one entry per request, in plan order (burst) or in
completion order (mixed, viewers).
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import hashlib
import json
import random
import resource
import sys
import threading
import time
import zlib
from collections.abc import Callable
from itertools import accumulate
from typing import Any

import aiohttp

from loadtests.bench.signin import bearer

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
        self.bytes: list[int] = []  # the answer's body as received (compressed, when it came so)

    def add(self, kind, status, latency, queued, sent_at, done_at, booking_id, seat_ids, size=0) -> None:
        self.bytes.append(size)
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


async def _send(
    session: aiohttp.ClientSession,
    method: str,
    path: str,
    data: bytes | None,
    headers: dict[str, str] | None,
    expected: tuple[int, ...],
    described: Callable[[], str],
) -> tuple[int, bytes]:
    """-> (status, the answer's bytes), or (TIMEOUT or TRANSPORT_ERROR, b""). The first answers of an
    unexpected status are kept, with the request as `described` says it."""
    if data is not None:
        headers = {**(headers or {}), **JSON_HEADERS}
    try:
        async with session.request(method, path, data=data, headers=headers) as response:
            payload = await response.read()
            status = response.status
    except TimeoutError:
        return TIMEOUT, b""
    except (aiohttp.ClientError, OSError):
        return TRANSPORT_ERROR, b""
    if status not in expected and len(error_samples) < SAMPLES_KEPT:
        error_samples.append(
            {"status": status, "request": described(), "answer": payload[:300].decode(errors="replace")}
        )
    return status, payload


async def _call(
    session: aiohttp.ClientSession,
    method: str,
    path: str,
    body: bytes | None,
    headers: dict[str, str] | None = None,
) -> tuple[int, str | None, int]:
    """-> (status, booking id of a 201/202, body bytes received)."""
    status, payload = await _send(
        session, method, path, body, headers, EXPECTED, lambda: (body or b"")[:300].decode(errors="replace")
    )
    booking_id = None
    if status in (201, 202) and method == "POST" and "/bookings" in path:
        try:
            booking_id = json.loads(payload).get("booking_id")
        except ValueError:
            booking_id = None
    return status, booking_id, len(payload)


def _session(spec: dict) -> aiohttp.ClientSession:
    connector = aiohttp.TCPConnector(limit=spec["concurrency"], limit_per_host=0, ttl_dns_cache=None)
    timeout = aiohttp.ClientTimeout(total=spec["timeout"])
    return aiohttp.ClientSession(
        spec["base_url"],
        connector=connector,
        timeout=timeout,
        auto_decompress=spec.get("auto_decompress", True),
    )


def signed_headers(tokens: dict[str, str], headers: dict[str, str] | None) -> dict[str, dict[str, str]]:
    """{user: the headers of a request as that user}: built once, before the first request is sent."""
    return {user: {**(headers or {}), **bearer(token)} for user, token in tokens.items()}


async def run_burst(spec: dict, started: float, recorder: Recorder) -> None:
    slots = asyncio.Semaphore(spec["concurrency"])
    requests = spec["requests"]
    headers = spec.get("headers") or None
    as_user = signed_headers(spec.get("tokens") or {}, headers)
    results: list[tuple | None] = [None] * len(requests)

    async def one(index: int, method: str, path: str, body: Any) -> None:
        created = time.perf_counter()
        payload = json.dumps(body).encode() if body is not None else None
        # A booking as the user its body names; a read (no body) as nobody
        sent_headers = as_user.get(body.get("user_id"), headers) if isinstance(body, dict) else headers
        async with slots:
            sent = time.perf_counter()
            sent_at = time.time()
            status, booking_id, size = await _call(session, method, path, payload, sent_headers)
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
            size,
        )

    async with _session(spec) as session:
        await asyncio.gather(*(one(i, *request) for i, request in enumerate(requests)))
    for result in results:
        recorder.add(*result)


def zipf_cdf(count: int, exponent: float) -> list[float]:
    weights = [1.0 / (rank**exponent) for rank in range(1, count + 1)]
    total = sum(weights)
    return [value / total for value in accumulate(weights)]


async def run_mixed(spec: dict, started: float, recorder: Recorder) -> dict:
    rng = random.Random(spec["seed"])
    rows: list[list[int]] = spec["rows"]
    seats = [(r, i) for r, row in enumerate(rows) for i in range(len(row))]  # seat rank -> (row, index)
    cdf = zipf_cdf(len(seats), spec["zipf_exponent"]) if spec["distribution"] == "zipf" else None
    map_path = f"/performances/{spec['performance_id']}/seats"
    book_path = f"/performances/{spec['performance_id']}/bookings"
    deadline = started + spec["duration"]
    people = [bearer(token) for token in spec["tokens"]]
    reused = 0

    def pick_seats() -> list[int]:
        if cdf is None:
            row, index = seats[rng.randrange(len(seats))]
        else:
            row, index = seats[min(bisect.bisect_left(cdf, rng.random()), len(seats) - 1)]
        count = rng.randint(1, spec["max_seats"])
        start = max(0, min(index, len(rows[row]) - count))
        return rows[row][start : start + count]

    async def user(number: int) -> None:
        nonlocal reused
        # This virtual user's people, one booking each: never two of a person's bookings at once.
        mine = range(number, len(people), spec["concurrency"])
        booked = 0
        while True:
            now = time.perf_counter()
            if now >= deadline:
                return
            headers = None
            if rng.random() < spec["read_ratio"]:
                kind, method, path, body = "read", "GET", map_path, None
            else:
                if booked >= len(mine):
                    reused += 1
                person = mine[booked % len(mine)]
                booked += 1
                body = {"user_id": f"{spec['user_prefix']}-{person}", "seat_ids": pick_seats()}
                kind, method, path, headers = "book", "POST", book_path, people[person]
            sent_at = time.time()
            status, booking_id, size = await _call(
                session, method, path, json.dumps(body).encode() if body is not None else None, headers
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
                size,
            )

    if len(people) < spec["concurrency"]:
        raise ValueError(f"{len(people)} people for {spec['concurrency']} virtual users: one each at least")
    async with _session(spec) as session:
        await asyncio.gather(*(user(n) for n in range(spec["concurrency"])))
    return {"people": len(people), "people_reused": reused}


async def _call_json(
    session: aiohttp.ClientSession,
    method: str,
    path: str,
    body: dict | None,
    headers: dict | None = None,
    expected: tuple[int, ...] = EXPECTED,
) -> tuple[int, dict | None, int]:
    """-> (status, the answer's JSON or None, body bytes received)."""
    data = json.dumps(body).encode() if body is not None else None
    status, payload = await _send(
        session,
        method,
        path,
        data,
        headers,
        expected,
        lambda: f"{method} {path} {json.dumps(body)[:200] if body is not None else ''}",
    )
    try:
        answer = json.loads(payload) if payload else None
    except ValueError:
        answer = None
    return status, answer if isinstance(answer, dict) else None, len(payload)


def _error_code(answer: dict | None) -> str:
    return str(((answer or {}).get("error") or {}).get("code") or "?")


# What became of an attempt (hold-and-abandon): the `outcome` column of `attempts`.
CONFIRMED, WALKED_AWAY, CONFIRM_TOO_LATE = "confirmed", "walked_away", "confirm_expired"
REFUSED, REJECTED, EXPIRED_IN_LINE = "refused", "rejected", "expired_in_line"
ERROR = "error"


async def run_holds(spec: dict, started: float, recorder: Recorder, control: asyncio.Queue) -> dict:
    rng = random.Random(spec["seed"])
    performance_id = spec["performance_id"]
    book_path = f"/performances/{performance_id}/bookings"
    deadline = started + spec["duration"]
    think_min, think_max = spec["think"]
    people = [bearer(token) for token in spec["tokens"]]  # person n's headers: every call is made as them
    stopping = asyncio.Event()
    # One entry per attempt: [user, booking id, first status, outcome, code, seats asked, seats held,
    # ms from the hold's send to HELD (None if never), sent_at (epoch s)]
    attempts: list[list] = []

    def record(kind: str, status: int, sent: float, sent_at: float, booking_id=None, seats=None, size=0):
        done = time.perf_counter()
        recorder.add(kind, status, done - sent, 0.0, sent_at, done - started, booking_id, seats, size)

    async def pause(seconds: float) -> bool:
        """Sleep, unless told to stop meanwhile -> False when stopping."""
        if seconds > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), seconds)
        return not stopping.is_set() and time.perf_counter() < deadline

    async def attempt() -> None:
        person = rng.randrange(len(people))
        user, signed = f"{spec['user_prefix']}-{person}", people[person]
        count = rng.randint(1, spec["max_seats"])
        body = {"user_id": user, "section_id": rng.choice(spec["section_ids"]), "count": count, "hold": True}
        sent, sent_at = time.perf_counter(), time.time()
        status, answer, size = await _call_json(session, "POST", book_path, body, signed)
        booking_id = (answer or {}).get("booking_id") if status in (201, 202) else None
        seats = (answer or {}).get("seat_ids") or None
        record("hold", status, sent, sent_at, booking_id, seats, size)
        entry = [user, booking_id, status, None, None, count, None, None, round(sent_at, 6)]
        attempts.append(entry)
        booking = answer or {}
        if status == 202 and booking_id:
            # In line (or on its way to MySQL): poll until decided. Polling goes on after a `stop`: every
            # accepted booking is followed to its decision.
            while booking.get("status") == "PENDING" and time.perf_counter() < deadline + 60:
                await asyncio.sleep(spec["poll_interval"])
                poll_sent, poll_at = time.perf_counter(), time.time()
                polled, answer, size = await _call_json(
                    session, "GET", f"/bookings/{booking_id}", None, signed
                )
                record("poll", polled, poll_sent, poll_at, booking_id, None, size)
                if polled == 200 and answer:
                    booking = answer
                elif polled not in (-1, -2) and polled < 500:
                    break  # 404 or another surprise: counted as an error below
        elif status == 409:
            entry[3], entry[4] = REFUSED, _error_code(answer)
            return
        elif status != 201 or not booking_id:
            entry[3], entry[4] = ERROR, str(status)
            return
        final = booking.get("status")
        if final != "HELD":
            if final == "REJECTED":
                reason = booking.get("reason") or ""
                entry[3], entry[4] = REJECTED, "USER_LIMIT" if reason == "USER_LIMIT" else "SEAT_UNAVAILABLE"
            elif final == "EXPIRED":
                entry[3] = EXPIRED_IN_LINE
            else:
                entry[3], entry[4] = ERROR, str(final)
            return
        entry[6] = booking.get("seat_ids") or []
        entry[7] = round((time.time() - sent_at) * 1000, 3)
        if rng.random() >= spec["confirm_ratio"]:
            entry[3] = WALKED_AWAY  # never comes back for it: the hold runs out
            return
        await asyncio.sleep(rng.uniform(think_min, think_max))  # paying, even after a `stop`
        confirm_sent, confirm_at = time.perf_counter(), time.time()
        status, answer, size = await _call_json(
            session,
            "POST",
            f"/bookings/{booking_id}/confirm",
            {"payment_reference": f"pay-{booking_id}"},
            signed,
        )
        record("confirm", status, confirm_sent, confirm_at, booking_id, entry[6], size)
        if status == 200 and (answer or {}).get("status") == "CONFIRMED":
            entry[3] = CONFIRMED
        elif status == 409 and _error_code(answer) == "HOLD_EXPIRED":
            entry[3] = CONFIRM_TOO_LATE
        else:
            entry[3], entry[4] = ERROR, f"confirm {status} {_error_code(answer)}"

    async def user() -> None:
        while await pause(rng.uniform(0, 2 * spec["pause"])):
            await attempt()

    async def stop_when_told() -> None:
        while True:
            line = await control.get()
            if line in ("stop", "exit", ""):
                stopping.set()
                return

    async with _session(spec) as session:
        watcher = asyncio.ensure_future(stop_when_told())
        await asyncio.gather(*(user() for _ in range(spec["concurrency"])))
        watcher.cancel()
    return {"attempts": attempts}


ADMISSION_HEADER = "X-Admission-Token"
CRASH_EXPECTED = (403,)  # a booking write without this user's admission: 403 ADMISSION_REQUIRED


async def run_queue(spec: dict, started: float, recorder: Recorder, control: asyncio.Queue) -> dict:
    performance_id = spec["performance_id"]
    queue_path = f"/performances/{performance_id}/queue"
    book_path = f"/performances/{performance_id}/bookings"
    interval, early, retry = spec["poll_interval"], spec["poll_early"], spec["retry"]
    deadline = started + spec["duration"]
    queue_slots = asyncio.Semaphore(spec["concurrency"])
    book_slots = asyncio.Semaphore(spec["book_concurrency"])
    users = spec["users"]
    # One entry per user: [user, ticket, number (position + serving at join), join sent_at, join answered
    # (epoch s), eta at join, sent_at of the last read that said "not yet" (the join's if none), seen_at (the
    # answer that brought the admission; None: never), reads, booking status, booking id, booking sent_at,
    # booking ms, error code of the booking (or of a failed join/read)]
    people: list[list] = [
        [user, None, None, None, None, None, None, None, 0, None, None, None, None, None]
        for user, _, _ in users
    ]
    # One entry per crasher attempt: [user, kind, status, code, number, sent_at, booking id]
    crashes: list[list] = []
    borrowed: list[tuple[str, str]] = []  # the first (user, admission token) seen: the crashers' loan
    admission_seen = asyncio.Event()
    joins_left = len(users)
    all_joined = asyncio.Event()
    if not users:
        all_joined.set()

    async def call(session, slots, kind, method, path, body, headers, expected=EXPECTED, seats=None):
        created = time.perf_counter()
        async with slots:
            sent, sent_at = time.perf_counter(), time.time()
            status, answer, size = await _call_json(session, method, path, body, headers, expected)
            done, done_at = time.perf_counter(), time.time()
        booking_id = (answer or {}).get("booking_id") if kind != "join" and kind != "poll" else None
        if status not in (201, 202):
            booking_id = None
        recorder.add(
            kind, status, done - sent, sent - created, sent_at, done - started, booking_id, seats, size
        )
        return status, answer, sent_at, done_at, (done - sent) * 1000

    async def join(user: str, signed: dict) -> tuple[dict | None, float, float]:
        while True:
            # No body, as the page's fetch sends it; aiohttp would call an empty POST
            # application/octet-stream, which the app answers 415.
            status, answer, sent_at, done_at, _ = await call(
                qs, queue_slots, "join", "POST", queue_path, None, {**signed, **JSON_HEADERS}
            )
            if status in (200, 201) and answer and answer.get("ticket"):
                return answer, sent_at, done_at
            if time.perf_counter() + retry > deadline:
                return None, sent_at, done_at
            await asyncio.sleep(retry)  # as the page does after no answer, or one it cannot use

    def joined_one() -> None:
        nonlocal joins_left
        joins_left -= 1
        if joins_left == 0:
            all_joined.set()

    async def person(index: int) -> None:
        user, token, seat = users[index]
        entry = people[index]
        signed = bearer(token)
        answer, sent_at, done_at = await join(user, signed)
        joined_one()
        if answer is None:
            entry[13] = "join failed"
            return
        ticket = answer["ticket"]
        entry[1:7] = [
            ticket,
            answer["position"] + answer["serving"],
            sent_at,
            done_at,
            answer["eta_seconds"],
            sent_at,
        ]
        path = f"{queue_path}/{ticket}"
        wait = None
        while not answer.get("admission_token"):
            if wait is None:  # the page's timer: every second; sooner when the turn is due before then
                eta = float(answer.get("eta_seconds") or 0)
                wait = eta + early if eta < interval else interval
            await asyncio.sleep(wait)
            if time.perf_counter() > deadline:
                entry[13] = "not admitted before the deadline"
                return
            status, read, sent_at, done_at, _ = await call(qs, queue_slots, "poll", "GET", path, None, signed)
            entry[8] += 1
            wait = None
            if status == 200 and read:
                answer = read
                if not read.get("admission_token"):
                    entry[6] = sent_at
            elif status in (404, 410):  # the queue no longer knows it, or it lapsed: not expected here
                entry[13] = f"read {status}"
                return
            else:
                wait = retry  # no answer, or one the page cannot use: again after QUEUE_RETRY_MS
        entry[7] = done_at
        admission = answer["admission_token"]
        if not borrowed:
            borrowed.append((user, admission))
            admission_seen.set()
        headers = {**signed, ADMISSION_HEADER: admission}
        body = {"user_id": user, "seat_ids": [seat]}
        status, booked, sent_at, _, ms = await call(
            bs, book_slots, "book", "POST", book_path, body, headers, seats=[seat]
        )
        entry[9:14] = [
            status,
            (booked or {}).get("booking_id") if status in (201, 202) else None,
            sent_at,
            round(ms, 3),
            None if status in (201, 202) else _error_code(booked),
        ]

    async def crasher(index: int) -> None:
        user, token, seat = spec["crashers"][index]
        signed = bearer(token)
        answer, _, _ = await join(user, signed)
        number = answer["position"] + answer["serving"] if answer else None
        body = {"user_id": user, "seat_ids": [seat]}

        async def attempt(kind: str, headers: dict) -> None:
            status, answer, sent_at, _, _ = await call(
                bs, book_slots, kind, "POST", book_path, body, headers, CRASH_EXPECTED, [seat]
            )
            booking_id = (answer or {}).get("booking_id") if status in (201, 202) else None
            crashes.append([user, kind, status, _error_code(answer), number, sent_at, booking_id])

        await attempt("crash-none", signed)  # before its turn, no admission
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(admission_seen.wait(), max(0.0, deadline - time.perf_counter()))
        if borrowed:  # another user's admission, sent as this user's
            await attempt("crash-borrowed", {**signed, ADMISSION_HEADER: borrowed[0][1]})

    async def crash_when_told() -> bool:
        while True:
            line = await control.get()
            if line == "crash":
                return True
            if line in ("stop", "exit", ""):
                return False

    queue_spec = {**spec, "concurrency": spec["concurrency"]}
    book_spec = {**spec, "concurrency": spec["book_concurrency"]}
    async with _session(queue_spec) as qs, _session(book_spec) as bs:
        tasks = [asyncio.ensure_future(person(i)) for i in range(len(users))]
        await all_joined.wait()
        print("joined", flush=True)
        if await crash_when_told():
            tasks += [asyncio.ensure_future(crasher(i)) for i in range(len(spec["crashers"]))]
        await asyncio.gather(*tasks)
    return {"people": people, "crashes": crashes, "borrowed_from": borrowed[0][0] if borrowed else None}


STATUS_LETTERS = {"AVAILABLE": ord("A"), "HELD": ord("H"), "BOOKED": ord("B")}
VIEWER_EXPECTED = (200, 304, 410)


class ViewerRecorder:
    """One entry per seat-map read of the viewers, column-wise."""

    def __init__(self) -> None:
        self.kind: list[str] = []  # compact (the first read), since (a poll), recompact (after a 410)
        self.status: list[int] = []
        self.latency_ms: list[float] = []
        self.sent_at: list[float] = []  # epoch seconds
        self.done_at: list[float] = []  # seconds since the start signal
        self.bytes: list[int] = []  # body bytes as received (gzip-compressed when the server sent it so)
        self.changes: list[int] = []  # seats in a 200 delta

    def add(self, kind, status, latency, sent_at, done_at, size, changes) -> None:
        self.kind.append(kind)
        self.status.append(status)
        self.latency_ms.append(round(latency * 1000, 3))
        self.sent_at.append(round(sent_at, 6))
        self.done_at.append(round(done_at, 6))
        self.bytes.append(size)
        self.changes.append(changes)

    def to_dict(self) -> dict[str, list]:
        return dict(vars(self))


class MapCopy:
    """A viewer's own copy of the map: the status letters of every seat, section after section in the order
    the server lists them (as the compact view has them), and the version they are at."""

    def __init__(self, seat_map: dict) -> None:
        self.version: int = seat_map["version"]
        self.letters = bytearray()
        spans = []  # (first seat id, offset in letters)
        for section in seat_map["sections"]:
            if "status" in section:  # compact view
                first, text = section["first_seat_id"], section["status"].encode()
            else:  # the full view (a server that ignores ?since= answers it)
                seats = sorted(section["seats"], key=lambda seat: seat["seat_id"])
                first = seats[0]["seat_id"] if seats else 0
                text = bytes(STATUS_LETTERS[seat["status"]] for seat in seats)
            spans.append((first, len(self.letters)))
            self.letters += text
        spans.sort()
        self._firsts = [first for first, _ in spans]
        self._offsets = [offset for _, offset in spans]

    def apply(self, delta: dict) -> int:
        for change in delta["changes"]:
            seat_id = change["seat_id"]
            i = bisect.bisect_right(self._firsts, seat_id) - 1
            self.letters[self._offsets[i] + seat_id - self._firsts[i]] = STATUS_LETTERS[change["status"]]
        self.version = delta["version"]
        return len(delta["changes"])

    def digest(self) -> str:
        return hashlib.sha1(self.letters).hexdigest()


def map_digest(seat_map: dict) -> str:
    """What a viewer's MapCopy.digest() is for this map (compact view)."""
    return MapCopy(seat_map).digest()


async def run_viewers(spec: dict, started: float, recorder: ViewerRecorder, control: asyncio.Queue) -> dict:
    rng = random.Random(spec["seed"])
    interval = spec["interval"]
    path = f"/performances/{spec['performance_id']}/seats"
    headers = {"Accept-Encoding": "gzip"}
    copies: list[MapCopy | None] = [None] * spec["viewers"]
    phases = [rng.random() * interval for _ in range(spec["viewers"])]
    stopping = asyncio.Event()

    async def read(number: int, kind: str, params: dict) -> tuple[int, dict | None]:
        sent_at = time.time()
        sent = time.perf_counter()
        payload = b""
        try:
            async with sessions[number].get(path, params=params, headers=headers) as response:
                payload = await response.read()
                status = response.status
                coding = response.headers.get("Content-Encoding", "")
        except TimeoutError:
            status = TIMEOUT
        except (aiohttp.ClientError, OSError):
            status = TRANSPORT_ERROR
        done = time.perf_counter()
        body = None
        if status == 200:
            try:
                body = json.loads(zlib.decompress(payload, 31) if coding == "gzip" else payload)
            except (ValueError, zlib.error):
                status = 0  # an unreadable answer: counted as an error
        if status not in VIEWER_EXPECTED and len(error_samples) < SAMPLES_KEPT:
            answer = payload[:300].decode("latin-1")
            error_samples.append({"status": status, "request": f"GET {path} {params}", "answer": answer})
        changes = 0
        if body is not None and kind != "final":
            changes = len(body.get("changes", ()))
        if kind != "final":
            recorder.add(kind, status, done - sent, sent_at, done - started, len(payload), changes)
        return status, body

    async def whole(copy_of: int, kind: str) -> None:
        """The compact view, without If-None-Match (the page fetches with no-store and keeps no validator)."""
        status, body = await read(copy_of, kind, {"view": "compact"})
        if status == 200:
            copies[copy_of] = MapCopy(body)

    async def follow(copy_of: int, kind: str = "since") -> None:
        """One step of viewer `copy_of`: the compact view if it has no copy, else a delta."""
        copy = copies[copy_of]
        if copy is None:
            await whole(copy_of, "compact" if kind != "final" else kind)
            return
        # As chalicelib/web/app.js asks: view=compact with since (the delta is the same for both views).
        status, body = await read(copy_of, kind, {"view": "compact", "since": str(copy.version)})
        if status == 200:
            if "changes" in body:
                copy.apply(body)
            else:  # a whole map (a server without deltas): start again from it
                copies[copy_of] = MapCopy(body)
        elif status == 410:  # older than the history kept: the compact view again, at once
            await whole(copy_of, "recompact" if kind != "final" else kind)

    async def viewer(number: int) -> None:
        await asyncio.sleep(phases[number])
        while not stopping.is_set():
            await follow(number)
            await asyncio.sleep(interval)  # the page: the next poll a second after this answer

    async def stop_when_told() -> str:
        while True:
            line = await control.get()
            if line in ("stop", "exit", ""):
                stopping.set()
                return line

    async def last(number: int) -> None:
        async with slots:
            await follow(number, "final")

    # A connection of its own for every viewer, kept alive between polls, as each browser holds one: a shared
    # pool would open hundreds of new connections at once whenever reads slow down (the burst's start), and
    # measure the server's accept queue rather than its reads. Bodies inflated here, sizes as received.
    own = {**spec, "concurrency": 1, "auto_decompress": False}
    sessions = [_session(own) for _ in range(spec["viewers"])]
    slots = asyncio.Semaphore(min(spec["viewers"], 200))
    final: dict[tuple, int] = {}
    try:
        tasks = [asyncio.ensure_future(viewer(n)) for n in range(spec["viewers"])]
        told = await stop_when_told()
        await asyncio.gather(*tasks)
        stopped_at = time.perf_counter() - started
        cpu_at_stop = cpu_seconds()
        print("stopped", flush=True)
        if told == "stop" and await control.get() == "final":
            await asyncio.gather(*(last(n) for n in range(spec["viewers"])))
            for copy in copies:
                key = (copy.version, copy.digest()) if copy is not None else (None, None)
                final[key] = final.get(key, 0) + 1
    finally:
        await asyncio.gather(*(session.close() for session in sessions))
    return {
        "viewers": spec["viewers"],
        "interval": interval,
        "stopped_at": stopped_at,
        "cpu_at_stop": cpu_at_stop,
        "final_copies": [[version, digest, count] for (version, digest), count in final.items()],
    }


def _control_queue(loop: asyncio.AbstractEventLoop) -> asyncio.Queue:
    """The orchestrator's lines (stop, final, exit) as a queue of the loop."""
    queue: asyncio.Queue = asyncio.Queue()

    def reader() -> None:
        while True:
            line = sys.stdin.readline()
            loop.call_soon_threadsafe(queue.put_nowait, line.strip())
            if not line or line.strip() in ("exit", "final"):
                return

    threading.Thread(target=reader, daemon=True).start()
    return queue


def main(argv: list[str]) -> int:
    spec_file, out_file = argv
    with open(spec_file) as f:
        spec = json.load(f)
    fd_limit = raise_fd_limit(spec["concurrency"] + spec.get("book_concurrency", 0) + 256)
    print("ready", flush=True)
    sys.stdin.readline()
    viewers = spec["kind"] == "viewers"
    holds = spec["kind"] == "holds"
    queue = spec["kind"] == "queue"
    recorder = ViewerRecorder() if viewers else Recorder()
    cpu_before = cpu_seconds()
    started = time.perf_counter()
    extra: dict = {}

    async def run() -> None:
        if viewers:
            control = _control_queue(asyncio.get_running_loop())
            extra.update(await run_viewers(spec, started, recorder, control))
            return
        if holds:
            control = _control_queue(asyncio.get_running_loop())
            extra.update(await run_holds(spec, started, recorder, control))
            return
        if queue:
            control = _control_queue(asyncio.get_running_loop())
            extra.update(await run_queue(spec, started, recorder, control))
            return
        if spec["kind"] == "mixed":
            extra.update(await run_mixed(spec, started, recorder))
            return
        await run_burst(spec, started, recorder)

    if spec.get("uvloop", True) and uvloop is not None:
        uvloop.run(run())  # about a third less CPU per request than asyncio's loop
    else:
        asyncio.run(run())
    wall = time.perf_counter() - started
    cpu = cpu_seconds() - cpu_before
    if viewers:  # the following, not the final check: what the crowd cost this process
        wall = extra["stopped_at"]
        cpu = extra.pop("cpu_at_stop") - cpu_before
    with open(out_file, "w") as f:
        json.dump(
            {
                "event_loop": "uvloop" if spec.get("uvloop", True) and uvloop is not None else "asyncio",
                "wall_seconds": wall,
                "cpu_seconds": cpu,
                "fd_limit": fd_limit,
                "concurrency": spec["concurrency"],
                "error_samples": error_samples,
                **extra,
                **recorder.to_dict(),
            },
            f,
        )
    print("done", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
