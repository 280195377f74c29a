"""queue (scenarios.py, on request): issue 18's waiting room under 10,000 people at once.

One run per strategy of --queue-strategies (default redis_async), on two fresh performances of the same
seats (sections of 25 x 40, a seat per user): the room's (`"waiting_room": {"admit_per_second": R}`) and its
twin without a room. Every user (and every crasher) is signed in (POST /dev/token, signin.py) before the
load generator processes (load.py, kind `queue`) start; then:

1. the users join the room's queue at once and read their tickets as the page does (every second, or
   50 ms after the eta when that is sooner); the read that brings `admission_token` admits its user, who
   books their own seat with it at once (one seat each, distinct seats: every admitted user can book, and
   the twin books the same);
2. once every join is answered (each generator prints `joined`), the crashers join (at the back) and try to
   book before their turn: without an admission, then with another user's admission token; then they leave,
   never admitted (their tickets are never read);
3. after the room's bookings are drained and audited, the same users book the same seats of the twin, all
   at once (a burst as the others: `concurrency` connections, latency from the slot): booking p50/p99
   behind the room against without it.

What is measured (`summarise`):

- admission rate achieved against R, from the server's side (the tickets' turns as Redis holds them:
  (admitted - 1) / (last turn - first turn)) and from the client's (the arrival of the answer that first
  brought each user's token);
- users admitted out of join order (join order: the ticket's number, position + serving of the join's
  answer, checked against Redis): by the server, a user whose turn is later than the turn of someone who
  joined after them; by the client, a user told "not yet" by a read sent after someone who joined after them
  was seen admitted (proof from the outside: turn_i > that read's send > the other's sighting >= turn_j);
- booking latencies behind the room and without it; the crashers' answers (all must be 403
  ADMISSION_REQUIRED); MySQL's bookings of the room's performance by users the room never admitted (no
  collected ticket), or made before their user's admission was collected: both must be 0; double bookings,
  lost bookings and drift (audit.py) of both performances.
"""

from __future__ import annotations

import time
from itertools import pairwise

from loadtests.bench import scenarios as sc
from loadtests.bench.calls import call_fields, generator_fields, tally

TIMELINE_STEP = 0.25  # seconds per row of the admissions timeline (the chart)


def _new_performance(bench, strategy: str, users: int, rate: int | None) -> sc.Layout:
    from loadtests.bench.runner import _http_json
    from loadtests.bench.stack import ADMIN_TOKEN

    base = bench.stack.base_url
    event = _http_json(
        "POST",
        f"{base}/admin/events",
        sc.queue_event_body(strategy, users, rate),
        {"X-Admin-Token": ADMIN_TOKEN},
    )
    performance_id = event["performances"][0]["performance_id"]
    # The map opened once before the load (it loads the seats into Redis), as every scenario does.
    return sc.layout_from_seat_map(_http_json("GET", f"{base}/performances/{performance_id}/seats"))


def queue_run(bench, strategy: str) -> dict:
    from loadtests.bench.profiling import CpuMeter
    from loadtests.bench.runner import Generators

    profile = bench.plan.profile
    stack = bench.stack
    auditor = bench._auditor
    scenario = sc.QUEUE
    run_started = time.monotonic()
    users_count, rate = profile.queue_users, profile.queue_admit_per_second
    if strategy not in bench._warm:
        bench._warm_up(strategy)  # else the room, run first, would pay the strategy's cold start alone
    bench._warm.add(strategy)
    bench._tick(f"{scenario} {strategy}: creating the performances")
    room = _new_performance(bench, strategy, users_count, rate)
    twin = _new_performance(bench, strategy, users_count, None)
    room_seats = [seat for row in room.rows for seat in row]
    twin_seats = [seat for row in twin.rows for seat in row]
    tag = f"queue-{strategy}-{int(time.time() * 1000) % 10**8}"
    users = [f"{tag}-{k}" for k in range(users_count)]
    crashers = [f"{tag}-x{k}" for k in range(profile.queue_crashers)]
    bench._signed_in = {"users": 0, "seconds": 0.0}
    tokens = bench.sign_in(users + crashers)

    n = max(1, min(profile.generators, users_count))
    per = max(1, profile.concurrency // n)
    # The crashers try the seats of the last users (taken or not, they must get a 403 first).
    specs = [
        {
            "base_url": stack.base_url,
            "timeout": profile.request_timeout,
            "kind": "queue",
            "concurrency": per,
            "book_concurrency": per,
            "duration": users_count / rate + profile.request_timeout + 120,
            "performance_id": room.performance_id,
            "users": [[users[k], tokens[users[k]], room_seats[k]] for k in range(i, users_count, n)],
            "crashers": [
                [crashers[k], tokens[crashers[k]], room_seats[-1 - k % len(room_seats)]]
                for k in range(i, len(crashers), n)
            ],
            "poll_interval": profile.queue_poll_interval,
            "poll_early": QUEUE_POLL_EARLY,
            "retry": QUEUE_RETRY,
        }
        for i in range(n)
    ]

    # 1-2. the room
    meter = CpuMeter.of_stack(stack)
    generators = Generators(specs)
    everyone = range(len(specs))
    try:
        bench._tick(f"{scenario} {strategy}: {users_count:,} joining")
        meter.start()
        released_at = time.time()
        started = time.perf_counter()
        generators.send(everyone, "go")
        generators.expect(everyone, "joined", users_count / 50 + profile.request_timeout + 60)
        joined_seconds = time.perf_counter() - started
        bench._tick(f"{scenario} {strategy}: admitting {users_count:,} at {rate:,}/s")
        generators.send(everyone, "crash")
        generators.wait(everyone, users_count / rate + 2 * profile.request_timeout + 180)
        wall = time.perf_counter() - started
        outputs = [generators.output(i) for i in everyone]
    finally:
        generators.close()
    load_cpu = meter.stop()
    generator_cpu = sum(out["cpu_seconds"] for out in outputs)
    load_cpu["generator"] = round(generator_cpu, 2)
    people = [entry for out in outputs for entry in out["people"]]
    crashes = [entry for out in outputs for entry in out["crashes"]]
    seat_of = dict(zip(users, room_seats, strict=False))
    accepted = [(e[10], e[9], [seat_of[e[0]]]) for e in people if e[9] in (201, 202) and e[10]]
    bench._tick(f"{scenario} {strategy}: draining {len(accepted):,} bookings behind the room")
    meter.start()
    drained = auditor.wait_drained(room.performance_id, {b for b, _, _ in accepted}, profile.drain_timeout)
    drain_cpu = meter.stop()
    bench._tick(f"{scenario} {strategy}: audit of the room")
    audit = auditor.audit(room.performance_id, accepted, bench._reconciler)
    rows = audit.pop("rows")
    tickets = auditor.waiting_room_tickets(room.performance_id)
    bookings = auditor.bookings_by_user(room.performance_id)

    # 3. the twin without a room: the same users, the same seats, all at once
    bench._tick(f"{scenario} {strategy}: the same {users_count:,} bookings without a room")
    path = f"/performances/{twin.performance_id}/bookings"
    requests = [
        ["POST", path, {"user_id": user, "seat_ids": [twin_seats[k]]}] for k, user in enumerate(users)
    ]
    burst = [
        {
            "base_url": stack.base_url,
            "timeout": profile.request_timeout,
            "kind": "burst",
            "concurrency": per,
            "requests": requests[i::n],
            "tokens": {body["user_id"]: tokens[body["user_id"]] for _, _, body in requests[i::n]},
        }
        for i in range(n)
    ]
    twin_meter = CpuMeter.of_stack(stack)
    twin_outputs, twin_generator_cpu, twin_wall = bench._generate(burst, twin_meter)
    twin_cpu = twin_meter.stop()
    twin_cpu["generator"] = round(twin_generator_cpu, 2)
    without = bench._summarise(strategy, "queue-without-room", twin_outputs, twin_wall, twin_generator_cpu)
    twin_accepted = list(bench._accepted(twin_outputs))
    without["performance_id"] = twin.performance_id
    without["cpu_seconds_during_load"] = twin_cpu
    without.update(
        auditor.wait_drained(twin.performance_id, {b for b, _, _ in twin_accepted}, profile.drain_timeout)
    )
    bench._tick(f"{scenario} {strategy}: audit without the room")
    twin_audit = auditor.audit(twin.performance_id, twin_accepted, bench._reconciler)
    bench._apply_audit(without, strategy, twin_outputs, twin_accepted, twin_audit)

    run = summarise(
        strategy,
        rate,
        outputs,
        people,
        crashes,
        tickets,
        bookings,
        rows,
        set(users),
        set(crashers),
        released_at,
    )
    run.update(
        {
            "performance_id": room.performance_id,
            "twin_performance_id": twin.performance_id,
            "seats": len(room_seats),
            "poll_interval_seconds": profile.queue_poll_interval,
            "joined_seconds": round(joined_seconds, 3),
            "load_wall_seconds": round(wall, 3),
            "duration_seconds": round(wall, 3),
            "throughput_rps": round(run["requests"] / wall, 1) if wall else 0.0,
            "cpu_seconds_during_load": load_cpu,
            "cpu_seconds_during_drain": drain_cpu,
            "signed_in_before_load": dict(bench._signed_in),
            **drained,
            "double_bookings": audit["double_bookings"],
            "lost_bookings": audit["lost_bookings"],
            "drift": audit["drift"],
            "unanswered_bookings": audit["audit"]["unanswered_bookings"],
            "audit": audit["audit"],
            "without_room": without,
        }
    )
    run["generator"]["cpu_percent_of_one_core"] = (
        round(100 * generator_cpu / (wall * len(outputs)), 1) if wall else 0.0
    )
    run["run_seconds"] = round(time.monotonic() - run_started, 2)
    failures = invariant_failures(run)
    run["invariant_failures"] = failures
    run["invariants_ok"] = not failures
    if failures:
        bench.say(f"INVARIANT FAILED in {scenario} {strategy}: {'; '.join(failures)}")
    if bench._bar is not None:
        bench._bar.update(1)
    else:
        adm = run["admission"]
        bench.say(
            f"{scenario} {strategy}: {users_count:,} users at {rate:,}/s: achieved {adm['server_rate']} "
            f"(server), {adm['client_rate']} (client); out of order {adm['out_of_order_server']} / "
            f"{adm['out_of_order_client']}; booking p99 {(run['booking_ms'] or {}).get('p99')} ms behind the "
            f"room, {(without['latency_ms'] or {}).get('p99')} ms without; invariants "
            f"{'ok' if run['invariants_ok'] else 'FAILED'} ({run['run_seconds']:.0f} s)"
        )
    return run


# The page's timer (chalicelib/web/app.js): a read 50 ms after the eta when the turn is due within the poll
# interval; after no answer (or one it cannot use) again in 2 s.
QUEUE_POLL_EARLY = 0.05
QUEUE_RETRY = 2.0


def invariant_failures(run: dict) -> list[str]:
    adm, crash, without = run["admission"], run["crashers"], run["without_room"]
    checks = [
        (run["answered"] == run["requests"], f"answered {run['answered']}/{run['requests']}"),
        (adm["joined"] == run["users"], f"joined {adm['joined']}/{run['users']}"),
        (adm["admitted_seen"] == run["users"], f"admitted {adm['admitted_seen']}/{run['users']}"),
        (adm["out_of_order_server"] == 0, f"{adm['out_of_order_server']} admitted out of order (server)"),
        (adm["out_of_order_client"] == 0, f"{adm['out_of_order_client']} admitted out of order (client)"),
        (
            crash["refused_403"] == crash["attempts"],
            f"crashers: {crash['attempts'] - crash['refused_403']} of {crash['attempts']} attempts not 403",
        ),
        (run["bookings_without_admission"] == 0, f"{run['bookings_without_admission']} bookings unadmitted"),
        (
            run["bookings_before_admission"] == 0,
            f"{run['bookings_before_admission']} bookings before admission",
        ),
        (run["double_bookings"] == 0, f"double {run['double_bookings']}"),
        (run["lost_bookings"] == 0, f"lost {run['lost_bookings']}"),
        (run["drift"] == 0, f"drift {run['drift']}"),
        (run["booking_errors"] == 0, f"{run['booking_errors']} bookings behind the room not accepted"),
        (without["double_bookings"] == 0, f"without the room: double {without['double_bookings']}"),
        (without["lost_bookings"] == 0, f"without the room: lost {without['lost_bookings']}"),
        (without["drift"] == 0, f"without the room: drift {without['drift']}"),
        (
            without["answered"] == without["requests"],
            f"without the room: answered {without['answered']}/{without['requests']}",
        ),
    ]
    return [message for ok, message in checks if not ok]


def _rate(times: list[float]) -> float | None:
    """Admissions per second over the span from the first to the last: (count - 1) intervals."""
    if len(times) < 2:
        return None
    span = max(times) - min(times)
    return round((len(times) - 1) / span, 1) if span > 0 else None


def out_of_order(order: list[tuple[int, float, float]]) -> int:
    """(number, latest moment the user is known NOT admitted, moment known admitted) per user -> how many
    users someone who joined after them (a higher number) was admitted strictly before. Server side: both
    moments are the turn; client side: the send of the last read that said "not yet", and the arrival of the
    first that brought the token."""
    count = 0
    earliest_later = float("inf")  # the earliest admission among the higher numbers seen so far
    for _, not_before, admitted_at in sorted(order, key=lambda item: item[0], reverse=True):
        if earliest_later < not_before:
            count += 1
        earliest_later = min(earliest_later, admitted_at)
    return count


def summarise(
    strategy: str,
    rate: int,
    outputs: list[dict],
    people: list[list],
    crashes: list[list],
    tickets: list[dict],
    bookings: list[tuple[str, str, str, float]],
    rows: dict,
    users: set[str],
    crashers: set[str],
    released_at: float,
) -> dict:
    from loadtests.bench.runner import percentiles

    calls = tally(outputs)
    queued: dict[str, list[float]] = {}
    for out in outputs:
        for kind, wait in zip(out["kind"], out["queued_ms"], strict=True):
            queued.setdefault(kind, []).append(wait)

    # People: [user, ticket, number, join sent, join answered, eta, last "not yet" sent, seen, reads,
    # booking status, booking id, booking sent, booking ms, error]
    by_user = {t["user"]: t for t in tickets}
    joined = [p for p in people if p[1] is not None]
    seen = [p for p in joined if p[7] is not None]
    number_mismatches = sum(1 for p in joined if by_user.get(p[0], {}).get("number") != p[2])
    room_tickets = [t for t in tickets if t["user"] in users]
    turns = [t["turn_ms"] / 1000 for t in room_tickets]
    collected = {t["user"]: t["collected_ms"] for t in tickets if t["collected_ms"] is not None}
    lag_seen = [1000 * p[7] - by_user[p[0]]["turn_ms"] for p in seen if p[0] in by_user]
    lag_collected = [t["collected_ms"] - t["turn_ms"] for t in room_tickets if t["collected_ms"] is not None]
    # between the users' consecutive tickets (the crashers join later, often after the room has emptied)
    gaps = [b["turn_ms"] - a["turn_ms"] for a, b in pairwise(room_tickets)]
    booked = [p for p in seen if p[9] is not None]
    confirm = [max(0.0, (rows[p[10]][1] - p[11]) * 1000) for p in booked if p[10] in rows and p[9] == 202]
    final: dict[str, int] = {}
    for p in booked:
        if p[10] in rows:
            final[rows[p[10]][0]] = final.get(rows[p[10]][0], 0) + 1
    join_sent = [p[3] for p in joined]
    join_answered = [p[4] for p in joined]
    admission_window = (max(p[7] for p in seen) - min(join_sent)) if seen and join_sent else 0.0

    admission = {
        "set_rate": rate,
        "joined": len(joined),
        "join_window_seconds": round(max(join_answered) - min(join_sent), 3) if joined else None,
        "joins_per_second": round(len(joined) / (max(join_answered) - min(join_sent)), 1)
        if len(joined) > 1
        else None,
        "number_mismatches": number_mismatches,  # position + serving of the join's answer vs Redis's number
        "tickets_in_redis": len(tickets),
        "server_rate": _rate(turns),
        "server_span_seconds": round(max(turns) - min(turns), 3) if turns else None,
        "turn_gap_ms": {"min": min(gaps), "max": max(gaps), "expected": round(1000 / rate, 3)}
        if gaps
        else None,
        "turn_inversions": sum(1 for gap in gaps if gap < 0),  # consecutive numbers, the later turned first
        "admitted_seen": len(seen),
        "client_rate": _rate([p[7] for p in seen]),
        "client_span_seconds": round(max(p[7] for p in seen) - min(p[7] for p in seen), 3) if seen else None,
        "collected": sum(1 for t in room_tickets if t["collected_ms"] is not None),
        "seen_after_turn_ms": percentiles(lag_seen),
        "collected_after_turn_ms": percentiles(lag_collected),
        "out_of_order_server": out_of_order([(t["number"], t["turn_ms"], t["turn_ms"]) for t in tickets]),
        "out_of_order_client": out_of_order([(p[2], p[6], p[7]) for p in seen]),
        "reads": sum(p[8] for p in joined),
        "reads_per_user": round(sum(p[8] for p in joined) / len(joined), 2) if joined else None,
        "reads_per_second": round(sum(p[8] for p in joined) / admission_window, 1)
        if admission_window
        else None,
    }
    adm = admission
    adm["out_of_order_share"] = round(adm["out_of_order_server"] / len(tickets), 6) if tickets else None
    adm["out_of_order_client_share"] = round(adm["out_of_order_client"] / len(seen), 6) if seen else None
    adm["server_rate_of_set"] = round(adm["server_rate"] / rate, 4) if adm["server_rate"] else None
    adm["client_rate_of_set"] = round(adm["client_rate"] / rate, 4) if adm["client_rate"] else None

    crash_statuses: dict[str, int] = {}
    crash_codes: dict[str, int] = {}
    for _, kind, status, code, _, _, _ in crashes:
        crash_statuses[f"{kind} {status}"] = crash_statuses.get(f"{kind} {status}", 0) + 1
        crash_codes[code] = crash_codes.get(code, 0) + 1
    crash = {
        "crashers": len(crashers),
        "attempts": len(crashes),
        "by_kind": dict(sorted(crash_statuses.items())),
        "codes": crash_codes,
        "refused_403": sum(1 for c in crashes if c[2] == 403 and c[3] == "ADMISSION_REQUIRED"),
        "accepted": sum(1 for c in crashes if c[6]),
        "admitted": sum(1 for user in crashers if user in collected),
    }

    unadmitted = [b for b in bookings if b[1] not in collected]
    before = [b for b in bookings if b[1] in collected and b[3] * 1000 < collected[b[1]]]
    timeline = admission_timeline(tickets, people, released_at)
    return {
        "strategy": strategy,
        "scenario": sc.QUEUE,
        "users": len(users),
        **call_fields(calls, outputs, percentiles),
        "queued_ms_by_kind": {kind: percentiles(values) for kind, values in queued.items()},
        "admission": admission,
        "booking_ms": percentiles([p[12] for p in booked if p[9] in (201, 202)]),
        "booking_statuses": {
            str(s): sum(1 for p in booked if p[9] == s) for s in sorted({p[9] for p in booked})
        },
        "booking_final": final,
        "booking_errors": sum(1 for p in seen if p[9] not in (201, 202)),
        "person_errors": {e: sum(1 for p in people if p[13] == e) for e in {p[13] for p in people} if e},
        "confirm_latency_ms": percentiles(confirm),
        "crashers": crash,
        "borrowed_from": [out.get("borrowed_from") for out in outputs],
        "bookings_in_mysql": len(bookings),
        "bookings_without_admission": len(unadmitted),
        "bookings_without_admission_sample": [list(b) for b in unadmitted[:5]],
        "bookings_before_admission": len(before),
        "bookings_by_crashers": sum(1 for b in bookings if b[1] in crashers),
        "timeline": timeline,
        # the comparison table's columns (report.py leaves this scenario out of it; __main__ and the CPU
        # table read them): a booking behind the room accepted is a success
        "success": sum(1 for p in booked if p[9] in (201, 202)),
        "rejected": 0,
        "errors": sum(1 for p in seen if p[9] not in (201, 202)) + calls.unanswered,
        **generator_fields(outputs),
    }


def admission_timeline(tickets: list[dict], people: list[list], released_at: float) -> list[list[float]]:
    """[seconds since the release, tickets whose turn had come, users who had seen their token, bookings
    answered] every TIMELINE_STEP seconds: the chart's curves."""
    turns = sorted(t["turn_ms"] / 1000 - released_at for t in tickets)
    seen = sorted(p[7] - released_at for p in people if p[7] is not None)
    booked = sorted(p[11] + p[12] / 1000 - released_at for p in people if p[11] is not None and p[12])
    end = max([*turns, *seen, *booked, 0.0])
    timeline, i, j, k, t = [], 0, 0, 0, 0.0
    while t <= end + TIMELINE_STEP:
        while i < len(turns) and turns[i] <= t:
            i += 1
        while j < len(seen) and seen[j] <= t:
            j += 1
        while k < len(booked) and booked[k] <= t:
            k += 1
        timeline.append([round(t, 2), i, j, k])
        t += TIMELINE_STEP
    return timeline
