"""hold-and-abandon (scenarios.py, on request): holds that run out and seats that are sold again.

One run per strategy, on a stack whose holds last the profile's `hold_seconds` (stack.py: HOLD_SECONDS, the
bench's stack only): a fresh performance (2 x 20 x 50 = 2,000 seats in the full profile), whose map is read
once (it loads it into Redis); every person of the pool signed in (POST /dev/token, signin.py) before the
load generator processes (load.py, kind `holds`) run `hold_concurrency` virtual users in closed loops, each
call made as its person; this process watches MySQL twice a second — seats CONFIRMED, seats held by a
live hold — and tells the users to stop once every seat is CONFIRMED (sold out) or at `hold_timeout` (not
sold out: the run fails, since people still wanted seats a lapsed hold kept from them). Then it waits for
every accepted booking to be decided and the seat map to say what MySQL says (a lapsed hold's "H:" goes at
the next sweep, every 60 s) and audits (audit.py, `audit_holds`): every seat sold exactly once, nobody's
CONFIRMED seats over MAX_SEATS_PER_USER, no accepted booking lost, Redis == MySQL.

Time to sell out runs from the users' release to the last CONFIRMED row's write in MySQL.
"""

from __future__ import annotations

import time
from itertools import pairwise

from loadtests.bench import scenarios as sc
from loadtests.bench.calls import call_fields, generator_fields, tally

PROGRESS_PERIOD = 0.5  # seconds between two looks at MySQL while the users run
SETTLE_TIMEOUT = 90.0  # after the stop: > one sweep period (60 s), for a lapsed hold still shown held
CALLS = ("hold", "poll", "confirm")


def _specs(bench, layout: sc.Layout, tag: str, hold_seconds: float) -> list[dict]:
    from loadtests.bench.runner import HOLD_THINK

    profile = bench.plan.profile
    users = profile.hold_concurrency
    n = max(1, min(profile.generators, users))
    shares = [users // n + (1 if i < users % n else 0) for i in range(n)]
    # The whole pool signed in once, before the run (person k is `tag`-k): every generator draws from it.
    people = [f"{tag}-{k}" for k in range(profile.hold_shape.users)]
    signed = bench.sign_in(people)
    tokens = [signed[person] for person in people]
    return [
        {
            "base_url": bench.stack.base_url,
            "timeout": profile.request_timeout,
            "kind": "holds",
            "concurrency": share,
            # the generator's own safety net: the orchestrator says `stop` long before
            "duration": profile.hold_timeout + 30,
            "performance_id": layout.performance_id,
            "section_ids": list(layout.section_ids),
            "max_seats": sc.MAX_SEATS,
            "users": profile.hold_shape.users,
            "user_prefix": tag,  # ids unique to the run; every generator draws from the whole pool
            "tokens": tokens,
            "pause": profile.hold_pause,
            "confirm_ratio": profile.hold_confirm_ratio,
            "poll_interval": profile.hold_poll_interval,
            "think": [HOLD_THINK[0] * hold_seconds, HOLD_THINK[1] * hold_seconds],
            "seed": bench.plan.seed + 100 + i,
        }
        for i, share in enumerate(shares)
    ]


def hold_and_abandon(bench, strategy: str) -> dict:
    from loadtests.bench.profiling import CpuMeter
    from loadtests.bench.runner import Generators, percentiles

    profile = bench.plan.profile
    stack = bench.stack
    auditor = bench._auditor
    scenario = sc.HOLD_AND_ABANDON
    run_started = time.monotonic()
    settings = stack.settings()
    layout = bench._new_performance(scenario, strategy)
    bench._warm.add(strategy)
    seats = sum(len(row) for row in layout.rows)
    tag = f"hold-{strategy}-{int(time.time() * 1000) % 10**8}"
    bench._signed_in = {"users": 0, "seconds": 0.0}
    specs = _specs(bench, layout, tag, settings.hold_seconds)
    meter = CpuMeter.of_stack(stack)
    timeline: list[list[float]] = []  # [seconds since the release, seats CONFIRMED, seats held (live)]
    sold_out_seen = None
    generators = Generators(specs)
    everyone = range(len(specs))
    try:
        meter.start()
        released_at = time.time()
        started = time.perf_counter()
        generators.send(everyone, "go")
        while True:
            confirmed, held = auditor.hold_progress(layout.performance_id)
            elapsed = time.perf_counter() - started
            timeline.append([round(elapsed, 2), confirmed, held])
            bench._tick(f"{scenario} {strategy}: {confirmed:,}/{seats:,} sold, {held:,} held, {elapsed:.0f}s")
            if confirmed >= seats:
                sold_out_seen = elapsed
                break
            if elapsed > profile.hold_timeout:
                bench.say(f"{scenario} {strategy}: not sold out after {elapsed:.0f} s ({confirmed}/{seats})")
                break
            if any(process.poll() is not None for process in generators.processes):
                bench.say(f"{scenario} {strategy}: a load generator exited before the end")
                break
            time.sleep(PROGRESS_PERIOD)
        generators.send(everyone, "stop")
        # The users finish what they were doing: a poll until the decision, a think and a confirm.
        generators.wait(everyone, profile.request_timeout + settings.hold_seconds + 120)
        wall = time.perf_counter() - started
        outputs = [generators.output(i) for i in everyone]
    finally:
        generators.close()
    load_cpu = meter.stop()
    generator_cpu = sum(out["cpu_seconds"] for out in outputs)
    load_cpu["generator"] = round(generator_cpu, 2)

    attempts = [entry for out in outputs for entry in out["attempts"]]
    accepted = [entry[1] for entry in attempts if entry[1]]
    told_confirmed = [(entry[1], entry[6] or []) for entry in attempts if entry[3] == "confirmed"]
    bench._tick(f"{scenario} {strategy}: settling {len(accepted):,} accepted")
    meter.start()
    settled = auditor.wait_holds_settled(layout.performance_id, SETTLE_TIMEOUT)
    drain_cpu = meter.stop()
    bench._tick(f"{scenario} {strategy}: audit")
    audit = auditor.audit_holds(
        layout.performance_id,
        seats,
        settings.max_seats_per_user,
        accepted,
        told_confirmed,
        bench._reconciler,
    )

    run = summarise(strategy, outputs, attempts, percentiles)
    last = audit.pop("last_confirmed_at")
    sold_out = audit.pop("sold_out")
    run.update(
        {
            "performance_id": layout.performance_id,
            "seats": seats,
            "users": profile.hold_shape.users,
            "hold_seconds": settings.hold_seconds,
            "max_seats_per_user": settings.max_seats_per_user,
            "confirm_ratio": profile.hold_confirm_ratio,
            "pause_seconds": profile.hold_pause,
            "sold_out": sold_out,
            "sold_out_seconds": round(last - released_at, 2) if sold_out and last is not None else None,
            "sold_out_seen_seconds": round(sold_out_seen, 2) if sold_out_seen is not None else None,
            "load_wall_seconds": round(wall, 3),
            "duration_seconds": round(wall, 3),
            "throughput_rps": round(run["requests"] / wall, 1) if wall else 0.0,
            "cpu_seconds_during_load": load_cpu,
            "cpu_seconds_during_drain": drain_cpu,
            "signed_in_before_load": dict(bench._signed_in),
            "timeline": timeline,
            "unsold_idle_seconds": unsold_idle_seconds(timeline, seats),
            **settled,
            **audit,
        }
    )
    run["generator"]["cpu_percent_of_one_core"] = (
        round(100 * generator_cpu / (wall * len(outputs)), 1) if wall else 0.0
    )
    run["run_seconds"] = round(time.monotonic() - run_started, 2)
    run["invariants_ok"] = (
        sold_out
        and run["double_bookings"] == 0
        and run["lost_bookings"] == 0
        and run["drift"] == 0
        and run["over_limit_users"] == 0
        and run["unfinished"] == 0
        and run["answered"] == run["requests"]
    )
    verdict = "ok" if run["invariants_ok"] else "FAILED"
    if not run["invariants_ok"]:
        bench.say(
            f"INVARIANT FAILED in {scenario} {strategy}: sold out={sold_out} "
            f"({run['seats_sold']}/{seats}), double={run['double_bookings']} lost={run['lost_bookings']} "
            f"drift={run['drift']} over the limit={run['over_limit_users']} unfinished={run['unfinished']} "
            f"answered={run['answered']}/{run['requests']}"
        )
    if bench._bar is not None:
        bench._bar.update(1)
    else:
        sold = f"sold out in {run['sold_out_seconds']:.0f} s" if sold_out else "NOT sold out"
        bench.say(
            f"{scenario} {strategy}: {sold}, {run['holds_expired']:,} holds expired, "
            f"{run['seats_resold']:,} of their seats re-sold, invariants {verdict} "
            f"({run['run_seconds']:.0f} s)"
        )
    return run


def unsold_idle_seconds(timeline: list[list[float]], seats: int) -> float:
    """Seconds MySQL had seats unsold and not one held by a live hold (between two looks that both said
    so), while users were asking: seats nobody could get. A lapsed hold's seats are free to the next
    request at once (docs/api.md, Holds), so this stays near 0 unless a strategy keeps them from it."""
    idle = 0.0
    for (t0, sold0, held0), (t1, sold1, held1) in pairwise(timeline):
        if sold0 < seats and sold1 < seats and held0 == 0 and held1 == 0 and sold1 == sold0:
            idle += t1 - t0
    return round(idle, 1)


def summarise(strategy: str, outputs: list[dict], attempts: list[list], percentiles) -> dict:
    """The users' side: calls and their latencies, what became of each attempt."""
    calls = tally(outputs, CALLS)
    outcomes: dict[str, int] = {}
    refusals: dict[str, int] = {}
    for entry in attempts:
        outcome, code = entry[3], entry[4]
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
        if outcome in ("refused", "rejected"):
            refusals[code] = refusals.get(code, 0) + 1
    held = [entry for entry in attempts if entry[6] is not None]
    to_held = [entry[7] for entry in held if entry[7] is not None]
    confirmed = outcomes.get("confirmed", 0)
    errors = calls.server_errors + calls.unanswered + outcomes.get("error", 0)
    return {
        "strategy": strategy,
        "scenario": sc.HOLD_AND_ABANDON,
        **call_fields(calls, outputs, percentiles),
        "confirm_latency_ms": None,
        "hold_to_held_ms": percentiles(to_held),
        "attempts": len(attempts),
        "holds_made": len(held),
        "confirmed": confirmed,
        "walked_away": outcomes.get("walked_away", 0),
        "confirm_too_late": outcomes.get("confirm_expired", 0),
        "expired_in_line": outcomes.get("expired_in_line", 0),
        "outcomes": dict(sorted(outcomes.items())),
        "refusals": dict(sorted(refusals.items())),
        "seats_held_by_users": sum(len(entry[6]) for entry in held),
        # The comparison table's columns (report.py leaves this scenario out of it, but the failure line
        # of __main__ and the CPU table read them): a confirmed hold is a success, a refusal a rejection.
        "success": confirmed,
        "rejected": sum(refusals.values()),
        "errors": errors,
        **generator_fields(outputs),
    }
