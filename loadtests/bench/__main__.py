"""`make bench`: the five strategies compared under a burst, with percentiles, an audit and charts.

    python -m loadtests.bench                    the full bench (10,000-request bursts, 20 s mixed runs)
    python -m loadtests.bench --smoke            300 requests per strategy and scenario, 3 s mixed runs
    python -m loadtests.bench --strategies redis_async,db_lock --scenarios baseline,hot-seat --requests 2000
    python -m loadtests.bench --scenarios baseline,read-full,read-compact,crowd --viewers 500
    python -m loadtests.bench --profile-run redis_async:hot-seat --profile-run db_lock:hot-seat
    python -m loadtests.bench --scenarios hold-and-abandon
                                                 on request only: 2,000 seats, 20 s holds, half the
                                                 holders walk away; time to sell out, holds expired and
                                                 re-sold (~4-5 min per strategy)
    python -m loadtests.bench --scenarios queue  on request only: 10,000 users join a waiting room (500/s)
                                                 at once and book as they are admitted, then the same
                                                 bookings without a room (~2-3 min, redis_async)
    python -m loadtests.bench --scenarios baseline,hot-seat --wrk
                                                 the bursts, then /ping and every strategy's hot-seat
                                                 refusals under wrk (an optional C load generator)
    python -m loadtests.bench report DIR         re-render DIR/report.md and the charts from DIR/results.json
    python -m loadtests.bench readme [DIR]       the comparison table of docs/benchmark.md from DIR (default:
                                                 the latest full results folder in loadtests/results/)

Results: loadtests/results/<UTC timestamp>/ (results.json, report.md, latency.png, throughput.png,
confirm.png, reads.png; raw/: logs of the server and the worker, py-spy's stacks, ignored by git); a smoke
run writes to a temporary folder unless --out says where. Exit status 1 if any invariant failed (after
everything is written), 2 on a bench error.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from loadtests.bench import scenarios as sc
from loadtests.bench.runner import (
    DEFAULT_GENERATORS,
    PROFILES,
    RESULTS_DIR,
    Bench,
    Plan,
    default_out_dir,
    latest_results_dir,
)
from loadtests.bench.stack import StackConfig


def _csv(text: str, allowed: tuple[str, ...], what: str) -> tuple[str, ...]:
    items = tuple(item.strip() for item in text.split(",") if item.strip())
    unknown = [item for item in items if item not in allowed]
    if unknown:
        raise SystemExit(f"unknown {what}: {', '.join(unknown)} (one of {', '.join(allowed)})")
    return items


def run_command(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m loadtests.bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--smoke", action="store_true", help="the small run CI does (invariants, not timings)"
    )
    parser.add_argument(
        "--out", type=Path, help="results folder (default: loadtests/results/<UTC timestamp>)"
    )
    parser.add_argument("--strategies", default=",".join(sc.STRATEGIES))
    parser.add_argument(
        "--scenarios",
        default=",".join(sc.SCENARIOS),
        help=f"default: all but {', '.join(sc.ON_REQUEST)} (on request only)",
    )
    parser.add_argument("--requests", type=int, help="requests per burst")
    parser.add_argument("--concurrency", type=int, help="connections of the burst generator")
    parser.add_argument("--drain-requests", type=int, help="bookings accepted while the consumers are paused")
    parser.add_argument("--mixed-seconds", type=float, help="duration of each mixed run")
    parser.add_argument("--mixed-concurrency", type=int, help="virtual users of the mixed runs")
    parser.add_argument(
        "--generators",
        type=int,
        help=f"load generator processes a burst or mixed run is split over (default {DEFAULT_GENERATORS})",
    )
    parser.add_argument(
        "--wrk",
        action="store_true",
        help="after the runs, /ping and each strategy's hot-seat refusals under wrk (a C load generator; "
        "`apt-get install wrk`): the throughput-only measurement with a generator that leaves the cores to "
        "the server",
    )
    parser.add_argument("--wrk-seconds", type=float, default=10.0, help="wrk: seconds per measurement")
    parser.add_argument("--wrk-connections", type=int, default=64, help="wrk: connections")
    parser.add_argument("--wrk-threads", type=int, default=2, help="wrk: threads")
    parser.add_argument(
        "--wrk-rounds", type=int, default=3, help="wrk: rounds of /ping then every strategy, in turn"
    )
    parser.add_argument(
        "--viewers", type=int, help="crowd: people following the seat map during the burst (default 2,000)"
    )
    parser.add_argument(
        "--viewer-generators", type=int, help="crowd: processes the viewers are spread over (default 1)"
    )
    parser.add_argument(
        "--viewer-interval", type=float, help="crowd: seconds from a viewer's answer to its next poll (1)"
    )
    parser.add_argument(
        "--crowd-strategies",
        help="crowd: the strategies it runs for (default: those benched; the full bench leaves stream_state "
        "out, ~6 min for its pair of runs, unless it is the only one)",
    )
    parser.add_argument(
        "--hold-seconds", type=float, help="hold-and-abandon: the stack's HOLD_SECONDS (default 20; smoke 4)"
    )
    parser.add_argument(
        "--hold-concurrency", type=int, help="hold-and-abandon: virtual users in closed loops (64; smoke 16)"
    )
    parser.add_argument(
        "--hold-users", type=int, help="hold-and-abandon: the pool of people (10,000; smoke 1,000)"
    )
    parser.add_argument(
        "--hold-pause",
        type=float,
        help="hold-and-abandon: mean seconds before each attempt, the next person arriving (0.25; smoke 0.1)",
    )
    parser.add_argument(
        "--hold-timeout",
        type=float,
        help="hold-and-abandon: seconds to sell out before the run is called not sold out (900; smoke 240)",
    )
    parser.add_argument("--queue-users", type=int, help="queue: users joining at once (10,000; smoke 1,000)")
    parser.add_argument("--queue-rate", type=int, help="queue: the room's admit_per_second (500; smoke 200)")
    parser.add_argument(
        "--queue-crashers",
        type=int,
        help="queue: users who try to book before their turn, then leave (100; smoke 20)",
    )
    parser.add_argument(
        "--queue-poll-interval",
        type=float,
        help="queue: seconds between two reads of a ticket (1, the page's; sooner when the eta is nearer)",
    )
    parser.add_argument("--queue-strategies", help="queue: the strategies it runs for (default redis_async)")
    parser.add_argument(
        "--workers",
        type=int,
        default=int(os.environ.get("BENCH_WEB_WORKERS", os.cpu_count() or 2)),
        help="granian worker processes (default: one per core)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=int(os.environ.get("BENCH_WEB_THREADS", "16")),
        help="blocking threads per granian worker",
    )
    parser.add_argument(
        "--backpressure",
        type=int,
        help="connections a granian worker serves at once (default: the crowd's viewers + the burst's "
        "connections + 256, at least granian's 2,048 / workers; an idle keep-alive connection holds one)",
    )
    parser.add_argument(
        "--consumer-concurrency",
        type=int,
        default=2,
        help="concurrent batches per queue and consumer process",
    )
    parser.add_argument(
        "--consumer-processes",
        type=int,
        default=os.cpu_count() or 1,
        help="consumer processes (infra/local/worker.py --processes; default: one per core)",
    )
    parser.add_argument(
        "--emulator", choices=("auto", "localstack", "moto"), default=os.environ.get("EMULATOR") or "auto"
    )
    parser.add_argument("--database", default="booking_bench", help="the bench's own database (recreated)")
    parser.add_argument(
        "--mysql", default="mysql://root@127.0.0.1:3306", help="MySQL server URL (no database)"
    )
    parser.add_argument(
        "--redis-url", default="redis://127.0.0.1:6379/13", help="Redis db of the bench's own"
    )
    parser.add_argument("--key-prefix", default="bench", help="Redis key prefix of the bench's own")
    parser.add_argument(
        "--redis-cluster",
        action="store_true",
        help="run the app on a local 3-primary Redis Cluster of the bench's own (REDIS_CLUSTER=1)",
    )
    parser.add_argument("--name", default="bench", help="prefix of the bench's queue and stream names")
    parser.add_argument(
        "--drop-database", action="store_true", help="drop the database and Redis keys at the end"
    )
    parser.add_argument(
        "--profile-run",
        action="append",
        default=[],
        metavar="STRATEGY:SCENARIO",
        help="rerun this one under py-spy after the table (may repeat; 'baseline' for the noop; 'auto': the "
        "fastest and slowest hot-seat strategies and the noop, the full bench's default)",
    )
    parser.add_argument(
        "--no-profile", action="store_true", help="no profiled reruns (the full bench does 'auto' by default)"
    )
    parser.add_argument("--no-ceilings", action="store_true", help="skip the emulator ceilings")
    parser.add_argument("--no-charts", action="store_true")
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--note", action="append", default=[], help="a note for report.md (may repeat)")
    args = parser.parse_args(argv)

    profile = PROFILES["smoke" if args.smoke else "full"]
    overrides = {
        "requests": args.requests,
        "drain_requests": args.drain_requests,
        "concurrency": args.concurrency,
        "mixed_seconds": args.mixed_seconds,
        "mixed_concurrency": args.mixed_concurrency,
        "generators": args.generators,
        "viewers": args.viewers,
        "viewer_generators": args.viewer_generators,
        "viewer_interval": args.viewer_interval,
        "hold_seconds": args.hold_seconds,
        "hold_concurrency": args.hold_concurrency,
        "hold_pause": args.hold_pause,
        "hold_timeout": args.hold_timeout,
        "queue_users": args.queue_users,
        "queue_admit_per_second": args.queue_rate,
        "queue_crashers": args.queue_crashers,
        "queue_poll_interval": args.queue_poll_interval,
    }
    profile = dataclasses.replace(profile, **{k: v for k, v in overrides.items() if v is not None})
    if args.hold_users is not None:
        profile = dataclasses.replace(
            profile, hold_shape=dataclasses.replace(profile.hold_shape, users=args.hold_users)
        )
    if args.queue_strategies is not None:
        profile = dataclasses.replace(
            profile, queue_strategies=_csv(args.queue_strategies, sc.STRATEGIES, "strategy")
        )
    if args.no_profile:
        args.profile_run = []
    elif not args.profile_run and not args.smoke:
        args.profile_run = ["auto"]
    for wanted in args.profile_run:
        if wanted == "auto":
            continue
        strategy, _, scenario = wanted.rpartition(":")
        if (
            scenario not in sc.SCENARIOS
            or (strategy and strategy not in sc.STRATEGIES)
            or (scenario in sc.ONCE) != (not strategy)
        ):
            raise SystemExit(
                f"--profile-run {wanted!r}: STRATEGY:SCENARIO, or one of {', '.join(sc.ONCE)} alone"
            )
    strategies = _csv(args.strategies, sc.STRATEGIES, "strategy")
    if args.crowd_strategies is not None:
        crowd_strategies = _csv(args.crowd_strategies, sc.STRATEGIES, "strategy")
    elif args.smoke:
        crowd_strategies = strategies
    else:
        crowd_strategies = tuple(s for s in strategies if s not in sc.SLOW_CROWD_STRATEGIES) or strategies
    scenarios = _csv(args.scenarios, sc.ALL_SCENARIOS, "scenario")
    if args.wrk:
        from loadtests.bench import wrk

        if wrk.available() is None:
            raise SystemExit("--wrk: wrk is not installed (apt-get install wrk, or brew install wrk)")
    left_out = [s for s in strategies if s not in crowd_strategies]
    if left_out and any(s in scenarios for s in sc.CROWDS):
        args.note.append(
            f"crowd: not run for {', '.join(left_out)} (the full bench leaves stream_state out: its pair of "
            "runs takes ~6 min on LocalStack's Kinesis; `--crowd-strategies` chooses)"
        )
        print(f"[bench] {args.note[-1]}", file=sys.stderr)
    plan = Plan(
        profile=profile,
        strategies=strategies,
        crowd_strategies=crowd_strategies,
        scenarios=scenarios,
        profile_runs=tuple(args.profile_run),
        measure_ceilings=not args.no_ceilings,
        charts=not args.no_charts,
        progress=not args.no_progress,
        notes=list(args.note),
        wrk=args.wrk,
        wrk_threads=args.wrk_threads,
        wrk_connections=args.wrk_connections,
        wrk_seconds=args.wrk_seconds,
        wrk_rounds=args.wrk_rounds,
    )
    if args.out:
        out_dir = args.out
    elif args.smoke:
        out_dir = (
            Path(tempfile.gettempdir())
            / "seat-booking-bench-smoke"
            / datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        )
    else:
        out_dir = default_out_dir()
    state_dir = Path(tempfile.mkdtemp(prefix=f"seat-booking-{args.name}-"))
    config = StackConfig(
        name=args.name,
        database_url=f"{args.mysql.rstrip('/')}/{args.database}",
        redis_url=args.redis_url,
        key_prefix=args.key_prefix,
        workers=args.workers,
        threads=args.threads,
        backpressure=args.backpressure
        or max(2048 // max(1, args.workers), profile.viewers + profile.concurrency + 256),
        consumer_concurrency=args.consumer_concurrency,
        consumer_processes=args.consumer_processes,
        emulator=args.emulator,
        state_dir=state_dir,
        log_dir=out_dir / "raw" / "logs",
        drop_database_at_exit=args.drop_database,
        redis_cluster=args.redis_cluster,
        # The short holds only where they are measured; every other scenario books outright.
        hold_seconds=profile.hold_seconds if sc.HOLD_AND_ABANDON in scenarios else None,
    )
    try:
        results = Bench(plan, out_dir, config).run()
    except Exception as exc:
        print(f"[bench] failed: {exc} (logs: {out_dir / 'raw' / 'logs'})", file=sys.stderr)
        return 2
    finally:
        shutil.rmtree(state_dir, ignore_errors=True)
    failed = [r for r in results["runs"] + results.get("profiles", []) if not r.get("invariants_ok", True)]
    print(f"[bench] results: {out_dir}/results.json, report: {out_dir}/report.md", file=sys.stderr)
    if failed:
        print("\n[bench] " + "!" * 70, file=sys.stderr)
        for run in failed:
            if run["scenario"] == sc.HOLD_AND_ABANDON:
                print(
                    f"[bench] INVARIANT FAILED: {run['scenario']} {run['strategy']}: sold_out="
                    f"{run['sold_out']} ({run['seats_sold']}/{run['seats']}) double_bookings="
                    f"{run['double_bookings']} lost_bookings={run['lost_bookings']} drift={run['drift']} "
                    f"over_limit_users={run['over_limit_users']} unfinished={run['unfinished']} "
                    f"answered={run['answered']}/{run['requests']}",
                    file=sys.stderr,
                )
                continue
            if run["scenario"] == sc.QUEUE:
                print(
                    f"[bench] INVARIANT FAILED: {run['scenario']} {run['strategy']}: "
                    + "; ".join(run.get("invariant_failures") or ["?"]),
                    file=sys.stderr,
                )
                continue
            viewers = run.get("viewers")
            print(
                f"[bench] INVARIANT FAILED: {run['scenario']} {run['strategy']}: double_bookings="
                f"{run['double_bookings']} lost_bookings={run['lost_bookings']} drift={run['drift']} "
                f"answered={run['answered']}/{run['requests']}"
                + (
                    f" viewers: unanswered reads={viewers['unanswered']}, maps equal to the server's="
                    f"{viewers['converged']}/{viewers['viewers']}"
                    if viewers
                    else ""
                ),
                file=sys.stderr,
            )
        print("[bench] " + "!" * 70, file=sys.stderr)
        return 1
    return 0


def report_command(argv: list[str]) -> int:
    from loadtests.bench import report

    parser = argparse.ArgumentParser(prog="python -m loadtests.bench report")
    parser.add_argument("folder", type=Path)
    parser.add_argument("--no-charts", action="store_true")
    args = parser.parse_args(argv)
    results = json.loads((args.folder / "results.json").read_text())
    print(report.write_all(results, args.folder, charts=not args.no_charts))
    return 0


def benchmark_page_command(argv: list[str]) -> int:
    """`make bench-readme`: the comparison table of docs/benchmark.md (the README links to that page)."""
    from loadtests.bench import report

    parser = argparse.ArgumentParser(prog="python -m loadtests.bench readme")
    parser.add_argument("folder", type=Path, nargs="?", help="default: the latest full results folder")
    args = parser.parse_args(argv)
    folder = args.folder or latest_results_dir()
    if folder is None:
        raise SystemExit(f"no full results folder in {RESULTS_DIR}: run `make bench` first")
    results = json.loads((folder / "results.json").read_text())
    page = report.BENCHMARK_PAGE.relative_to(report.ROOT)
    if not report.update_benchmark_page(results, folder.name):
        raise SystemExit(f"{page} has no {report.TABLE_START} … {report.TABLE_END} markers")
    print(f"{page}: comparison table from {folder}")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    commands = {"run": run_command, "report": report_command, "readme": benchmark_page_command}
    if argv and argv[0] in commands:
        return commands[argv[0]](argv[1:])
    return run_command(argv)


if __name__ == "__main__":
    sys.exit(main())
