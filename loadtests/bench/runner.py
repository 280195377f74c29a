"""The bench's run: stack up, emulator ceilings, every (scenario, strategy) run with its audit, results out.

Each run creates a fresh performance through POST /admin/events with the run's strategy, opens its seat map
once (as a buyer would before clicking; it also loads the map into Redis), releases the load generator
process(es), waits for the consumers to drain and audits. The read bursts share one performance (made once per
bench with the first strategy). A crowd run starts the viewers' generator process(es) first, releases the
booking burst once they are following, stops them after it, and after the audit has every viewer compare its
copy of the map with the server's. Results, report and charts are written even when an invariant fails; the
exit status then says so.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import platform
import select
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from loadtests.bench import scenarios as sc
from loadtests.bench import signin
from loadtests.bench.stack import ADMIN_TOKEN, PROJECT_DIR, Stack, StackConfig

RESULTS_DIR = PROJECT_DIR / "loadtests" / "results"


# Chosen from /ping's req/s with 1, 2, 3 and 4 generator processes on the 2-core bench machine
# (loadtests/README.md, "The load generator's ceiling").
DEFAULT_GENERATORS = 2


@dataclass(frozen=True)
class BenchProfile:
    name: str
    requests: int  # per burst
    drain_requests: int  # accepted while the consumers are paused (drain scenario)
    concurrency: int  # connections of the burst generator
    mixed_seconds: float
    mixed_concurrency: int  # closed-loop virtual users of the mixed scenarios
    ceiling_messages: int
    ceiling_records: int
    drain_timeout: float
    request_timeout: float
    # Load generator processes a burst (and a mixed run) is split over. One Python process (~0.2 ms of CPU
    # per request, more than the server's /ping) set /ping's pace here; see DEFAULT_GENERATORS.
    generators: int = DEFAULT_GENERATORS
    viewers: int = 2_000  # crowd: people following the seat map while the burst runs
    viewer_interval: float = 1.0  # seconds from a viewer's answer to its next poll (the page's REFRESH_MS)
    viewer_generators: int = 1  # processes the viewers are spread over (the burst has its own)
    crowd_warmup: float = 4.0  # viewer intervals the viewers follow before the burst is released
    crowd_tail: float = 2.0  # viewer intervals they go on following after its last answer
    # hold-and-abandon (on request): the performance and the pool of people, the stack's HOLD_SECONDS, the
    # virtual users in closed loops, the mean pause before each attempt (the next person arriving), the
    # holders who confirm, the poll interval of a 202, and how long it may take to sell out before the run
    # is called not sold out (and fails). A holder thinks HOLD_THINK of the hold's time before confirming.
    hold_shape: sc.HoldShape = field(default_factory=sc.HoldShape)
    hold_seconds: float = 20.0
    hold_concurrency: int = 64
    hold_pause: float = 0.25
    hold_confirm_ratio: float = 0.5
    hold_poll_interval: float = 0.25
    hold_timeout: float = 900.0
    # queue (issue 18, on request): the users who join a waiting room at once, the room's admit_per_second
    # (10,000 at 500/s: 20 s of admissions), the users who try to book before their turn, the page's poll
    # interval (a ticket read every second, sooner when its eta is nearer), the strategies it runs for.
    queue_users: int = 10_000
    queue_admit_per_second: int = 500
    queue_crashers: int = 100
    queue_poll_interval: float = 1.0
    queue_strategies: tuple[str, ...] = ("redis_async",)


# A holder who confirms does so after this share of HOLD_SECONDS (uniform): 1-5 s of a 20 s hold.
HOLD_THINK = (0.05, 0.25)
# A mixed run's booking is made by a person of its own, and every person is signed in before the run: the
# people are counted beforehand, enough for this many bookings a second, about twice the most a full bench
# has made (3,052 in 20 s by 64 virtual users). Past them a virtual user's people book again (counted in
# the run's `people_reused`).
MIXED_BOOKINGS_PER_SECOND = 300

FULL = BenchProfile("full", 10_000, 1_000, 1_000, 20, 64, 1_000, 500, 600, 120)
SMOKE = BenchProfile(
    "smoke",
    300,
    100,
    300,
    3,
    16,
    100,
    50,
    120,
    60,
    viewers=50,
    crowd_warmup=2.5,
    crowd_tail=1.5,
    # 2 x 5 x 20 = 200 seats, 1,000 people, 4 s holds: ~8 hold rounds, ~40 s per strategy
    hold_shape=sc.HoldShape(sections=2, rows=5, seats_per_row=20, users=1_000),
    hold_seconds=4.0,
    hold_concurrency=16,
    hold_pause=0.1,
    hold_timeout=240.0,
    # 1,000 users at 200/s: 5 s of admissions
    queue_users=1_000,
    queue_admit_per_second=200,
    queue_crashers=20,
)
PROFILES = {"full": FULL, "smoke": SMOKE}


@dataclass
class Plan:
    profile: BenchProfile
    strategies: tuple[str, ...] = sc.STRATEGIES
    scenarios: tuple[str, ...] = sc.SCENARIOS
    profile_runs: tuple[str, ...] = ()  # "strategy:scenario" (or "baseline") rerun under py-spy
    measure_ceilings: bool = True
    charts: bool = True
    progress: bool = True
    seed: int = 7
    notes: list[str] = field(default_factory=list)
    crowd_strategies: tuple[str, ...] | None = None  # None: every strategy benched
    # After the runs, wrk's /ping and hot-seat refusals per strategy (loadtests/bench/wrk.py; optional)
    wrk: bool = False
    wrk_threads: int = 2
    wrk_connections: int = 64
    wrk_seconds: float = 10.0
    wrk_rounds: int = 3

    def runs(self) -> list[tuple[str | None, str]]:
        order: list[tuple[str | None, str]] = [(None, s) for s in sc.ONCE if s in self.scenarios]
        for scenario in sc.PER_STRATEGY:
            if scenario in self.scenarios and scenario not in sc.CROWDS:
                order.extend(
                    (strategy, scenario)
                    for strategy in self.strategies
                    if scenario != sc.DRAIN or strategy in sc.ASYNC_STRATEGIES
                )
        # Each strategy's crowd right after the same burst without viewers (selecting crowd selects both):
        # the ratio of the two compares runs minutes, not a quarter of an hour, apart.
        crowds = [s for s in sc.CROWDS if s in self.scenarios or sc.CROWD in self.scenarios]
        crowded = self.strategies if self.crowd_strategies is None else self.crowd_strategies
        order.extend((strategy, scenario) for strategy in crowded for scenario in crowds)
        if sc.QUEUE in self.scenarios:  # on request only (scenarios.ON_REQUEST)
            order.extend((strategy, sc.QUEUE) for strategy in self.profile.queue_strategies)
        if sc.HOLD_AND_ABANDON in self.scenarios:  # on request only (scenarios.ON_REQUEST), last
            order.extend((strategy, sc.HOLD_AND_ABANDON) for strategy in self.strategies)
        return order


def percentiles(values: list[float]) -> dict[str, float] | None:
    if not values:
        return None
    ordered = sorted(values)

    def at(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, max(0, round(q * len(ordered) + 0.5) - 1))], 2)

    return {"p50": at(0.50), "p95": at(0.95), "p99": at(0.99), "max": round(ordered[-1], 2)}


def _http_json(method: str, url: str, body: dict | None = None, headers: dict | None = None) -> dict:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    for name, value in (headers or {}).items():
        request.add_header(name, value)
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.load(response)


def _http_get(url: str, headers: dict | None = None) -> bytes:
    request = urllib.request.Request(url, headers=headers or {})
    with urllib.request.urlopen(request, timeout=60) as response:
        return response.read()


def burst_users(requests: list[list]) -> list[str]:
    """The users a burst's bookings are made as: their bodies' user_id (a read has no body)."""
    return [body["user_id"] for _, _, body in requests if isinstance(body, dict) and "user_id" in body]


def _sleep_until(moment: float) -> None:
    left = moment - time.perf_counter()
    if left > 0:
        time.sleep(left)


class Generators:
    """Load generator processes (loadtests/bench/load.py), one per spec: started (each prints `ready`), sent
    lines (`go`; the viewers also `stop`, then `final` or `exit`), waited for, their outputs read."""

    def __init__(self, specs: list[dict]) -> None:
        self._work = Path(tempfile.mkdtemp(prefix="bench-load-"))
        self.processes: list[subprocess.Popen] = []
        try:
            for i, spec in enumerate(specs):
                (self._work / f"spec-{i}.json").write_text(json.dumps(spec))
                self.processes.append(
                    subprocess.Popen(
                        [
                            sys.executable,
                            "-m",
                            "loadtests.bench.load",
                            str(self._work / f"spec-{i}.json"),
                            str(self._work / f"out-{i}.json"),
                        ],
                        cwd=PROJECT_DIR,
                        stdin=subprocess.PIPE,
                        stdout=subprocess.PIPE,
                        text=True,
                    )
                )
            for process in self.processes:
                if process.stdout.readline().strip() != "ready":
                    raise RuntimeError("a load generator failed to start")
        except BaseException:
            self.close()
            raise

    def pids(self, indices) -> list[int]:
        return [self.processes[i].pid for i in indices]

    def send(self, indices, line: str) -> None:
        for i in indices:
            self.processes[i].stdin.write(line + "\n")
            self.processes[i].stdin.flush()

    def expect(self, indices, word: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        for i in indices:
            stdout = self.processes[i].stdout
            ready, _, _ = select.select([stdout], [], [], max(0.0, deadline - time.monotonic()))
            if not ready or stdout.readline().strip() != word:
                raise RuntimeError(f"a load generator did not say {word!r} within {timeout:.0f} s")

    def wait(self, indices, timeout: float) -> None:
        for i in indices:
            process = self.processes[i]
            process.wait(timeout=timeout)
            if process.returncode != 0:
                raise RuntimeError(f"a load generator exited with {process.returncode}")

    def output(self, i: int) -> dict:
        return json.loads((self._work / f"out-{i}.json").read_text())

    def close(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.kill()
                process.wait()
        shutil.rmtree(self._work, ignore_errors=True)


@dataclass
class Crowd:
    """A crowd run's viewers after the burst: their processes (following through the drain, then told
    `stop`, after the audit `final`), the moments (epoch seconds) and CPU snapshots of the run's windows."""

    generators: Generators
    viewers: list[int]  # indices of the viewer processes in `generators`
    meter: object  # the run's CpuMeter
    marks: dict[str, float] = field(default_factory=dict)
    snapshots: dict[str, dict[str, float]] = field(default_factory=dict)

    def mark(self, name: str) -> None:
        self.snapshots[name] = self.meter.snapshot()
        self.marks[name] = time.time()

    def cpu(self, start: str, end: str) -> dict[str, float]:
        from loadtests.bench.profiling import CpuMeter

        return CpuMeter.between(self.snapshots[start], self.snapshots[end])

    def seconds(self, start: str, end: str) -> float:
        return self.marks[end] - self.marks[start]

    def close(self) -> None:
        self.generators.close()


def machine_info() -> dict:
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    memory = None
    with contextlib.suppress(Exception):
        import psutil

        memory = round(psutil.virtual_memory().total / 2**30, 1)
    return {
        "cpu_count": os.cpu_count(),
        "cpu_model": model,
        "memory_gib": memory,
        "python": platform.python_version(),
        "os": platform.platform(),
        "hostname": platform.node(),
    }


def git_commit() -> dict:
    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=PROJECT_DIR, capture_output=True, text=True, check=False
        ).stdout.strip()

    return {
        "commit": git("rev-parse", "HEAD"),
        "dirty": bool(git("status", "--porcelain", "--untracked-files=no")),
    }


def versions(stack: Stack) -> dict:
    info: dict[str, str] = {}
    with contextlib.suppress(Exception):
        import granian

        info["granian"] = granian.__version__
    with contextlib.suppress(Exception):
        import aiohttp

        info["aiohttp"] = aiohttp.__version__
    with contextlib.suppress(Exception):
        from urllib.parse import urlsplit

        import pymysql

        parts = urlsplit(stack.config.database_url)
        connection = pymysql.connect(
            host=parts.hostname, port=parts.port or 3306, user=parts.username or "root"
        )
        with connection.cursor() as cursor:
            cursor.execute("SELECT VERSION()")
            info["mysql"] = cursor.fetchone()[0]
        connection.close()
    with contextlib.suppress(Exception):
        info["redis"] = stack.redis_client().info("server")["redis_version"]
    with (
        contextlib.suppress(Exception),
        urllib.request.urlopen(f"{stack.endpoint}/_localstack/health", timeout=2) as response,
    ):
        info["localstack"] = json.load(response).get("version", "")
    return info


class Bench:
    def __init__(self, plan: Plan, out_dir: Path, stack_config: StackConfig) -> None:
        self.plan = plan
        self.out_dir = out_dir
        self.stack = Stack(stack_config, say=self.say)
        self._bar = None
        self._auditor = None
        self._reconciler = None
        self._read_layout = None  # the read bursts' performance, made once
        self._signed_in = {"users": 0, "seconds": 0.0}  # the current run's sign-ins (before its load)
        self._warm: set[str] = set()  # strategies that have served a run (or a warm-up) in this bench

    # --- output ---------------------------------------------------------------------------------------
    def say(self, message: str) -> None:
        if self._bar is not None:
            self._bar.write(f"[bench] {message}", file=sys.stderr)
        else:
            print(f"[bench] {message}", file=sys.stderr, flush=True)

    # --- the whole bench ------------------------------------------------------------------------------
    def run(self) -> dict:
        from loadtests.bench import report

        self.out_dir.mkdir(parents=True, exist_ok=True)
        profile = self.plan.profile
        stack = self.stack
        results: dict = {
            "bench": profile.name,
            "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "profile": asdict(profile),
            "machine": machine_info(),
            "git": git_commit(),
            "runs": [],
            "emulator_baselines": [],
            "profiles": [],
            "notes": list(self.plan.notes),
        }
        bench_started = time.monotonic()
        os.environ.update(stack.env)  # this process's own chalicelib (reconcile dry run) sees the stack
        try:
            self.say(f"starting the AWS emulator on {stack.endpoint}")
            stack.start_emulator()
            self.say(f"emulator: {stack.emulator_name} ({stack.emulator_note})")
            if self.plan.measure_ceilings:
                from loadtests.bench import ceilings

                self.say("measuring the emulator's ceilings")
                results["emulator_baselines"] = ceilings.measure(
                    stack.endpoint,
                    profile.ceiling_messages,
                    profile.ceiling_records,
                    threads=8,
                    # as many pollers as the worker runs at once: its processes' concurrent batches
                    consumers=stack.config.consumer_concurrency * stack.config.consumer_processes,
                )
            results["phase_seconds"] = {"emulator_and_ceilings": round(time.monotonic() - bench_started, 1)}
            stack.prepare_data()
            self._bootstrap_this_process()
            stack.start_app()
            results["phase_seconds"]["stack"] = round(time.monotonic() - bench_started, 1)
            results["stack"] = self._describe_stack()
            self.say(f"serving {stack.base_url}: {results['stack']['server']}")
            from loadtests.bench.audit import Auditor

            self._auditor = Auditor(
                stack.config.database_url,
                stack.redis_url,
                stack.config.key_prefix,
                cluster=stack.config.redis_cluster,
            )
            runs = self.plan.runs()
            auto = tuple(self.plan.profile_runs) == ("auto",)
            self._open_bar(len(runs) + (5 if auto else len(self.plan.profile_runs)))
            for strategy, scenario in runs:
                self._describe(strategy, scenario)
                results["runs"].append(self.one_run(strategy, scenario))
                self._write(results)
                if not stack.alive():
                    raise RuntimeError("the server or the worker exited during the bench; see the logs")
            if self.plan.wrk:
                from loadtests.bench import wrk

                self._tick("wrk: /ping and hot-seat refusals")
                plan = self.plan
                results["wrk"] = wrk.measure(
                    self,
                    plan.strategies,
                    plan.wrk_threads,
                    plan.wrk_connections,
                    plan.wrk_seconds,
                    plan.wrk_rounds,
                )
                self._write(results)
            for wanted in self._profile_runs(results["runs"]):
                strategy, _, scenario = wanted.rpartition(":")
                self._describe(strategy or None, scenario, "profiling ")
                results["profiles"].append(self.one_run(strategy or None, scenario, profiled=True))
                self._write(results)
        finally:
            if self._bar is not None:
                self._bar.close()
                self._bar = None
            if self._auditor is not None:
                self._auditor.close()
            results["finished_at"] = datetime.now(UTC).isoformat(timespec="seconds")
            results["total_seconds"] = round(time.monotonic() - bench_started, 1)
            with contextlib.suppress(Exception):
                results.setdefault("stack", self._describe_stack())
            stopping = time.monotonic()
            stack.stop()
            results["phase_seconds"] = {
                **results.get("phase_seconds", {}),
                "stop": round(time.monotonic() - stopping, 1),
            }
            self._write(results)
        reporting = time.monotonic()
        report.write_all(results, self.out_dir, charts=self.plan.charts)
        self.say(
            f"stack stopped in {results['phase_seconds']['stop']} s, "
            f"report in {time.monotonic() - reporting:.1f} s"
        )
        return results

    def _profile_runs(self, runs: list[dict]) -> list[str]:
        """The runs to profile: as asked, or "auto": the fastest and the slowest strategy of the hot-seat
        burst (by throughput), redis_async's (the headline target), the do-nothing endpoint for reference."""
        if tuple(self.plan.profile_runs) != ("auto",):
            return list(self.plan.profile_runs)
        hot = sorted(
            (r for r in runs if r["scenario"] == sc.HOT_SEAT), key=lambda r: r["throughput_rps"], reverse=True
        )
        chosen = (
            [f"{hot[0]['strategy']}:{sc.HOT_SEAT}", f"{hot[-1]['strategy']}:{sc.HOT_SEAT}"] if hot else []
        )
        if any(r["strategy"] == "redis_async" for r in hot):  # the headline target's run
            chosen.append(f"redis_async:{sc.HOT_SEAT}")
        if any(r["strategy"] == "redis_async" and r["scenario"] == sc.DRAIN for r in runs):
            chosen.append(f"redis_async:{sc.DRAIN}")  # the consumers' own pace
        if any(r["scenario"] == sc.BASELINE for r in runs):
            chosen.append(sc.BASELINE)
        return list(dict.fromkeys(chosen))

    def _open_bar(self, total: int) -> None:
        if not self.plan.progress:
            return
        from tqdm import tqdm

        # disable=None: a bar on a terminal; elsewhere (CI logs) one line per finished run instead.
        self._bar = tqdm(
            total=total, unit="run", desc="bench", file=sys.stderr, dynamic_ncols=True, disable=None
        )
        if self._bar.disable:
            self._bar = None

    def _describe(self, strategy: str | None, scenario: str, prefix: str = "") -> None:
        if self._bar is not None:
            self._bar.set_postfix_str(f"{prefix}{scenario} {strategy or ''}".strip())

    def _tick(self, phase: str) -> None:
        if self._bar is not None:
            self._bar.set_postfix_str(phase)

    def _write(self, results: dict) -> None:
        path = self.out_dir / "results.json"
        path.write_text(json.dumps(results, indent=2) + "\n")

    def _bootstrap_this_process(self) -> None:
        """The catalogue's Bloom filter built (as `make run` does), and a reconciler for the dry-run audit."""
        try:
            from chalicelib.bootstrap import build

            # Built from the stack's settings, not chalicelib.config.settings: that one was read from this
            # process's environment when chalicelib.config was first imported, before the stack existed.
            services = build(self.stack.settings())
            services.catalogue.build_id_filter()
            self._reconciler = services.reconciler
        except Exception as exc:  # the audit still runs its own comparisons
            self.say(f"no reconcile dry run in the audit: {exc}")

    def _describe_stack(self) -> dict:
        c = self.stack.config
        v = versions(self.stack)
        return {
            "server": (
                f"granian {v.get('granian', '?')} (WSGI, infra/local/wsgi.py), {c.workers} worker processes "
                f"x {c.threads} blocking threads"
            ),
            "workers": c.workers,
            "threads": c.threads,
            "backpressure": c.backpressure,
            "consumers": (
                f"infra/local/worker.py, {c.consumer_processes} process(es), {c.consumer_concurrency} "
                f"concurrent batches per SQS queue in each, 1 reader per Kinesis shard (polled every "
                f"{c.kinesis_poll_interval:g} s)"
            ),
            "consumer_processes": c.consumer_processes,
            "consumer_concurrency": c.consumer_concurrency,
            "emulator": self.stack.emulator_name,
            "emulator_note": self.stack.emulator_note,
            "database": c.database_url.rsplit("/", 1)[-1],
            "redis": (
                f"{'Redis Cluster, 3 primaries, seed ' if c.redis_cluster else ''}{self.stack.redis_url}"
                f" prefix {c.key_prefix}"
            ),
            "load_generator": (
                f"loadtests/bench/load.py: asyncio + aiohttp {v.get('aiohttp', '?')}, "
                f"{self.plan.profile.generators} process(es) per burst"
                + (
                    f"; wrk ({self.plan.wrk_threads} threads, {self.plan.wrk_connections} connections) "
                    "for the throughput-only /ping and hot-seat refusals"
                    if self.plan.wrk
                    else ""
                )
            ),
            "versions": v,
        }

    # --- one run --------------------------------------------------------------------------------------
    def one_run(self, strategy: str | None, scenario: str, profiled: bool = False) -> dict:
        if scenario == sc.HOLD_AND_ABANDON:
            from loadtests.bench.holds import hold_and_abandon

            return hold_and_abandon(self, strategy)
        if scenario == sc.QUEUE:
            from loadtests.bench.waiting_room import queue_run

            return queue_run(self, strategy)
        with contextlib.ExitStack() as cleanup:  # a crowd's viewer processes, whatever happens
            return self._one_run(strategy, scenario, profiled, cleanup)

    def _one_run(self, strategy, scenario, profiled, cleanup: contextlib.ExitStack) -> dict:
        from loadtests.bench.profiling import CpuMeter, Profiler

        profile = self.plan.profile
        stack = self.stack
        layout = None
        run_started = time.monotonic()
        if scenario in sc.READS:
            layout = self._shared_read_layout()
            query = "?view=compact" if scenario == sc.READ_COMPACT else ""
            # The view rendered and gzipped before the burst, as any read of an unchanged map finds it.
            _http_get(f"{stack.base_url}/performances/{layout.performance_id}/seats{query}", sc.GZIP_HEADERS)
        elif scenario != sc.BASELINE:
            if scenario == sc.CROWD_SOLO and strategy not in self._warm:
                self._warm_up(strategy)  # else the twin without viewers, run first, would pay the cold start
            layout = self._new_performance(scenario, strategy)
        if strategy:
            self._warm.add(strategy)
        tag = f"{scenario}-{strategy or 'noop'}-{int(time.time() * 1000) % 10**8}"
        self._signed_in = {"users": 0, "seconds": 0.0}
        specs = self._specs(scenario, layout, tag)
        viewer_specs = self._viewer_specs(layout) if scenario == sc.CROWD else []
        meter = CpuMeter.of_stack(stack)
        profiler = None
        if profiled:
            targets = {f"server-{i}": pid for i, pid in enumerate(stack.server_worker_pids())}
            if strategy in sc.ASYNC_STRATEGIES:
                targets["consumers"] = stack.consumer_pids()[0]  # one of the consumer processes
            name = f"{strategy or 'noop'}-{scenario}"
            profiler = Profiler(targets, self.out_dir / "raw" / "profiles" / name)
            if not profiler.start():
                self.say("py-spy is not installed: no profile")
                profiler = None
        self._tick(f"{scenario} {strategy or ''}: load")
        load_before = round(os.getloadavg()[0], 2)
        paused = scenario == sc.DRAIN and stack.pause_consumers()
        crowd = None
        try:
            if viewer_specs:
                outputs, generator_cpu, wall, crowd = self._generate_crowd(specs, viewer_specs, meter)
                cleanup.callback(crowd.close)
            else:
                outputs, generator_cpu, wall = self._generate(specs, meter)
        finally:
            resumed_at = time.time()
            if paused:
                stack.resume_consumers()
        load_cpu = meter.stop()
        if crowd is not None:  # the booking burst's window, as in its twin without viewers
            load_cpu = crowd.cpu("burst_release", "burst_end")
        load_cpu["generator"] = round(generator_cpu, 2)

        run = self._summarise(strategy, scenario, outputs, wall, generator_cpu)
        run["load_average_before"] = load_before
        run["load_wall_seconds"] = round(
            wall, 3
        )  # the CPU meter's window: release to the last generator exit
        run["cpu_seconds_during_load"] = load_cpu
        run["signed_in_before_load"] = dict(self._signed_in)
        if layout is not None:
            run["performance_id"] = layout.performance_id
            accepted = [(b, s, seats) for b, s, seats in self._accepted(outputs)]
            self._tick(f"{scenario} {strategy}: draining {len(accepted)} accepted")
            meter.start()
            drained = self._auditor.wait_drained(
                layout.performance_id, {b for b, _, _ in accepted}, profile.drain_timeout
            )
            run.update(drained)
            run["cpu_seconds_during_drain"] = meter.stop()
            if crowd is not None:  # they watched the decisions land too
                self._stop_viewers(crowd)
            if profiler is not None:
                run["profile"] = profiler.stop()
                profiler = None
            self._tick(f"{scenario} {strategy}: audit")
            audit = self._auditor.audit(layout.performance_id, accepted, self._reconciler)
            if paused:
                written = [t for _, t in audit["rows"].values() if t >= resumed_at - 1]
                if written:
                    span = max(written) - resumed_at
                    run["consumers_paused"] = True
                    run["drain_rps"] = round(len(written) / span, 1) if span > 0 else None
            self._apply_audit(run, strategy, outputs, accepted, audit)
            if scenario in sc.READS:
                run["map"] = {"performance_id": layout.performance_id, "strategy": self._read_strategy()}
        else:
            run.update({"double_bookings": 0, "lost_bookings": 0, "drift": 0})
        if crowd is not None:
            self._tick(f"{scenario} {strategy}: the viewers' maps against the server's")
            run["viewers"] = self._finish_crowd(crowd, layout, run, outputs)
        if profiler is not None:
            run["profile"] = profiler.stop()
        run["run_seconds"] = round(time.monotonic() - run_started, 2)
        run["invariants_ok"] = (
            run["double_bookings"] == 0
            and run["lost_bookings"] == 0
            and run["drift"] == 0
            and run["answered"] == run["requests"]
            and run["success"] + run["rejected"] + run["errors"] + run["lost_bookings"] == run["requests"]
        )
        viewers = run.get("viewers")
        if viewers is not None:  # every read answered; every viewer's copy of the map the server's in the end
            run["invariants_ok"] = (
                run["invariants_ok"]
                and viewers["unanswered"] == 0
                and viewers["converged"] == viewers["viewers"]
            )
        if not run["invariants_ok"]:
            viewers = run.get("viewers") or {}
            self.say(
                f"INVARIANT FAILED in {scenario} {strategy}: double={run['double_bookings']} "
                f"lost={run['lost_bookings']} drift={run['drift']} "
                f"answered={run['answered']}/{run['requests']}"
                + (
                    f" viewers: unanswered reads={viewers['unanswered']} "
                    f"converged={viewers['converged']}/{viewers['viewers']}"
                    if viewers
                    else ""
                )
            )
        if self._bar is not None:
            self._bar.update(1)
        else:
            p99 = (run["latency_ms"] or {}).get("p99")
            verdict = "ok" if run["invariants_ok"] else "FAILED"
            self.say(
                f"{scenario} {strategy or ''}: {run['throughput_rps']:,.0f} req/s, p99 {p99} ms, "
                f"invariants {verdict} ({run['run_seconds']:.0f} s)"
            )
        return run

    def _new_performance(self, scenario: str, strategy: str) -> sc.Layout:
        self._tick(f"{scenario} {strategy}: creating the performance")
        stack = self.stack
        event = _http_json(
            "POST",
            f"{stack.base_url}/admin/events",
            sc.event_body(scenario, strategy, self.plan.profile.hold_shape),
            {"X-Admin-Token": ADMIN_TOKEN},
        )
        performance_id = event["performances"][0]["performance_id"]
        return sc.layout_from_seat_map(
            _http_json("GET", f"{stack.base_url}/performances/{performance_id}/seats")
        )

    def _warm_up(self, strategy: str) -> None:
        """A strategy's first requests in a bench open its connections (MySQL, Redis, the AWS clients) in
        every server thread: a small hot-section burst on a performance of its own, drained, not reported."""
        self._tick(f"{strategy}: warming up")
        profile = self.plan.profile
        layout = self._new_performance(sc.HOT_SEAT, strategy)  # one section, 10 x 20 seats
        count = min(profile.requests, 300)
        requests = sc.burst_requests(sc.HOT_SECTION, layout, count, f"warm-{strategy}", self.plan.seed)
        spec = {
            "base_url": self.stack.base_url,
            "timeout": profile.request_timeout,
            "kind": "burst",
            "concurrency": min(profile.concurrency, count),
            "requests": requests,
            "tokens": self.sign_in(burst_users(requests)),
        }
        from loadtests.bench.profiling import CpuMeter

        outputs, _, _ = self._generate([spec], CpuMeter({}))
        accepted = {booking_id for booking_id, _, _ in self._accepted(outputs)}
        self._auditor.wait_drained(layout.performance_id, accepted, profile.drain_timeout)

    def _read_strategy(self) -> str:
        return self.plan.strategies[0] if self.plan.strategies else "redis_async"

    def _shared_read_layout(self) -> sc.Layout:
        """The read bursts' 5,000-seat performance: one per bench (the read path is every strategy's)."""
        if self._read_layout is None:
            self._read_layout = self._new_performance(sc.READ_FULL, self._read_strategy())
        return self._read_layout

    def _viewer_specs(self, layout: sc.Layout) -> list[dict]:
        profile = self.plan.profile
        n = max(1, min(profile.viewer_generators, profile.viewers))
        shares = [profile.viewers // n + (1 if i < profile.viewers % n else 0) for i in range(n)]
        return [
            {
                "base_url": self.stack.base_url,
                "timeout": profile.request_timeout,
                "kind": "viewers",
                "viewers": share,
                "concurrency": share,  # the connector's limit: a connection for every viewer if need be
                "interval": profile.viewer_interval,
                "performance_id": layout.performance_id,
                "seed": self.plan.seed + 1000 + i,
            }
            for i, share in enumerate(shares)
        ]

    def _specs(self, scenario: str, layout, tag: str) -> list[dict]:
        profile = self.plan.profile
        base = {"base_url": self.stack.base_url, "timeout": profile.request_timeout}
        n = max(1, profile.generators)
        if scenario in sc.MIXED:
            per = max(1, profile.mixed_concurrency // n)
            people = max(per, math.ceil(MIXED_BOOKINGS_PER_SECOND * profile.mixed_seconds / n))
            prefixes = [f"{tag}-g{i}" for i in range(n)]
            tokens = self.sign_in(f"{prefix}-{k}" for prefix in prefixes for k in range(people))
            return [
                {
                    **base,
                    "kind": "mixed",
                    "concurrency": per,
                    "duration": profile.mixed_seconds,
                    "performance_id": layout.performance_id,
                    "rows": layout.rows,
                    "distribution": "zipf" if scenario == sc.MIXED_ZIPF else "uniform",
                    "zipf_exponent": sc.ZIPF_EXPONENT,
                    "read_ratio": sc.READ_RATIO,
                    "max_seats": sc.MAX_SEATS,
                    "seed": self.plan.seed + i,
                    "user_prefix": prefix,
                    "tokens": [tokens[f"{prefix}-{k}"] for k in range(people)],
                }
                for i, prefix in enumerate(prefixes)
            ]
        count = profile.drain_requests if scenario == sc.DRAIN else profile.requests
        requests = sc.burst_requests(scenario, layout, count, tag, self.plan.seed)
        if scenario in sc.READS:  # as a browser asks; bodies counted as they came, never inflated
            base = {**base, "headers": sc.GZIP_HEADERS, "auto_decompress": False}
        tokens = self.sign_in(burst_users(requests))
        return [
            {
                **base,
                "kind": "burst",
                "concurrency": max(1, profile.concurrency // n),
                "requests": requests[i::n],
                "tokens": {user: tokens[user] for user in burst_users(requests[i::n])},
            }
            for i in range(n)
        ]

    def sign_in(self, users: Iterable[str]) -> dict[str, str]:
        """Every user's token (POST /dev/token, signin.py), before the run's generators start: sign-ins are
        outside every latency and every CPU meter's window, and counted in the run's
        `signed_in_before_load`."""
        users = list(users)
        if not users:
            return {}
        self._tick(f"signing in {len(users):,} users")
        started = time.monotonic()
        tokens = signin.sign_in(self.stack.base_url, users)
        self._signed_in["users"] += len(tokens)
        self._signed_in["seconds"] = round(self._signed_in["seconds"] + time.monotonic() - started, 2)
        return tokens

    def _generate(self, specs: list[dict], meter) -> tuple[list[dict], float, float]:
        """Start the generator process(es), release them together -> (outputs, their CPU seconds, wall)."""
        generators = Generators(specs)
        try:
            everyone = range(len(specs))
            meter.start()
            started = time.perf_counter()
            generators.send(everyone, "go")
            profile = self.plan.profile
            generators.wait(everyone, profile.request_timeout + profile.mixed_seconds + 600)
            wall = time.perf_counter() - started
            outputs = [generators.output(i) for i in everyone]
        finally:
            generators.close()
        return outputs, sum(o["cpu_seconds"] for o in outputs), wall

    def _generate_crowd(self, specs: list[dict], viewer_specs: list[dict], meter):
        """The viewers released first; once they follow (crowd_warmup intervals), the burst -> (the burst's
        outputs, its CPU seconds, its wall, the Crowd: the viewers still following, _stop_viewers stops
        them after the drain). CPU snapshots: the viewers released, following an unchanged map (idle_start
        -> burst_release), the burst (burst_release -> burst_end)."""
        profile = self.plan.profile
        generators = Generators(specs + viewer_specs)
        try:
            bursts = range(len(specs))
            viewers = list(range(len(specs), len(specs) + len(viewer_specs)))
            meter.add_group("viewers", generators.pids(viewers))
            crowd = Crowd(generators, viewers, meter)
            mark = crowd.mark
            interval = profile.viewer_interval
            meter.start()
            released = time.perf_counter()
            generators.send(viewers, "go")
            mark("viewers_released")
            # Every viewer has made its first read (a random phase within the first interval) by then.
            _sleep_until(released + interval * min(1.5, profile.crowd_warmup / 2))
            mark("idle_start")
            _sleep_until(released + interval * profile.crowd_warmup)
            mark("burst_release")
            started = time.perf_counter()
            generators.send(bursts, "go")
            generators.wait(bursts, profile.request_timeout + 600)
            wall = time.perf_counter() - started
            mark("burst_end")
            outputs = [generators.output(i) for i in bursts]
        except BaseException:
            generators.close()
            raise
        return outputs, sum(o["cpu_seconds"] for o in outputs), wall, crowd

    def _stop_viewers(self, crowd: Crowd) -> None:
        """After the drain (the map's last changes: an asynchronous strategy's decisions come after the
        burst), crowd_tail intervals more of following, then the viewers stop."""
        profile = self.plan.profile
        crowd.mark("drained")
        time.sleep(profile.viewer_interval * profile.crowd_tail)
        crowd.generators.send(crowd.viewers, "stop")
        patience = profile.viewer_interval + profile.request_timeout + 30
        crowd.generators.expect(crowd.viewers, "stopped", patience)
        crowd.mark("stopped")

    def _finish_crowd(self, crowd: Crowd, layout: sc.Layout, run: dict, burst: list[dict]) -> dict:
        """After the drain and the audit: every viewer polls once more, and its copy of the map is compared
        with the server's compact view -> the viewers' summary."""
        from loadtests.bench.load import map_digest

        profile = self.plan.profile
        time.sleep(0.6)  # past the compact view's render period (SEAT_MAP_RENDER_SECONDS, 0.25 s by default)
        crowd.generators.send(crowd.viewers, "final")
        crowd.generators.wait(crowd.viewers, profile.request_timeout + 120)
        outputs = [crowd.generators.output(i) for i in crowd.viewers]
        raw = self.out_dir / "raw" / "viewers"  # every read, for a closer look (not in git)
        raw.mkdir(parents=True, exist_ok=True)
        bookings = {k: [v for out in burst for v in out[k]] for k in ("status", "latency_ms", "sent_at")}
        dump = {"marks": crowd.marks, "outputs": outputs, "bookings": bookings}
        (raw / f"{run['strategy']}-{layout.performance_id}.json").write_text(json.dumps(dump))
        newest = max(
            (version for out in outputs for version, _, _ in out["final_copies"] if version is not None),
            default=0,
        )
        url = f"{self.stack.base_url}/performances/{layout.performance_id}/seats?view=compact"
        for _ in range(10):  # the compact view may be one render period behind the deltas
            server_map = _http_json("GET", url)
            if server_map["version"] >= newest:
                break
            time.sleep(0.3)
        return self._summarise_viewers(outputs, crowd, server_map["version"], map_digest(server_map))

    def _summarise_viewers(self, outputs: list[dict], crowd: Crowd, version: int, digest: str) -> dict:
        marks = crowd.marks
        idle = (marks["idle_start"], marks["burst_release"])
        burst = (marks["burst_release"], marks["burst_end"])
        statuses: dict[int, int] = {}
        by_kind: dict[str, dict[int, int]] = {}
        latencies: dict[str, list[float]] = {"all": [], "idle": [], "burst": []}
        reads = {"all": 0, "idle": 0, "burst": 0}
        received = {"all": 0, "idle": 0, "burst": 0}
        changes = deltas = 0
        for out in outputs:
            for kind, status, latency, sent_at, size, changed in zip(
                out["kind"],
                out["status"],
                out["latency_ms"],
                out["sent_at"],
                out["bytes"],
                out["changes"],
                strict=True,
            ):
                statuses[status] = statuses.get(status, 0) + 1
                by_kind.setdefault(kind, {})
                by_kind[kind][status] = by_kind[kind].get(status, 0) + 1
                windows = ["all"]
                if idle[0] <= sent_at < idle[1]:
                    windows.append("idle")
                elif burst[0] <= sent_at < burst[1]:
                    windows.append("burst")
                for window in windows:
                    reads[window] += 1
                    received[window] += size
                    if status > 0:
                        latencies[window].append(latency)
                changes += changed
                deltas += 1 if kind == "since" and status == 200 else 0
        viewers = sum(out["viewers"] for out in outputs)

        def rate(amounts: dict[str, int], digits: int) -> dict[str, float | None]:
            return {k: round(v / seconds[k], digits) if seconds[k] > 0 else None for k, v in amounts.items()}

        seconds = {
            "all": crowd.seconds("viewers_released", "stopped"),
            "idle": crowd.seconds("idle_start", "burst_release"),
            "burst": crowd.seconds("burst_release", "burst_end"),
        }
        cpu = {
            "idle": crowd.cpu("idle_start", "burst_release"),
            "burst": crowd.cpu("burst_release", "burst_end"),
            "all": crowd.cpu("viewers_released", "stopped"),
        }
        processes = len(outputs)
        final = [(v, d, n) for out in outputs for v, d, n in out["final_copies"]]
        converged = sum(n for v, d, n in final if v == version and d == digest)
        unanswered = statuses.get(-1, 0) + statuses.get(-2, 0)
        return {
            "viewers": viewers,
            "processes": processes,
            "interval_seconds": outputs[0]["interval"],
            "windows_seconds": {k: round(v, 3) for k, v in seconds.items()},
            "reads": reads,
            "reads_per_second": rate(reads, 1),
            "bytes": received,
            "bytes_per_second": rate(received, 0),
            "latency_ms": {k: percentiles(v) for k, v in latencies.items()},
            "status_counts": {str(k): v for k, v in sorted(statuses.items())},
            "by_kind": {kind: {str(k): v for k, v in sorted(c.items())} for kind, c in by_kind.items()},
            "not_modified": by_kind.get("since", {}).get(304, 0),
            "deltas": deltas,
            "gone": by_kind.get("since", {}).get(410, 0),
            "changes_received": changes,
            "errors": sum(n for s, n in statuses.items() if s not in (200, 304, 410)),
            "unanswered": unanswered,
            # server CPU per read while the viewers followed an unchanged map (no booking yet): all 304s
            "server_ms_per_read_idle": round(1000 * cpu["idle"]["server"] / reads["idle"], 3)
            if reads["idle"]
            else None,
            "cpu_seconds": {k: v for k, v in cpu.items()},
            "generator": {
                "processes": processes,
                "cpu_seconds": round(sum(o["cpu_seconds"] for o in outputs), 2),
                # % of one core per viewer process, averaged, in each window (psutil, from outside)
                "cpu_percent_of_one_core": {
                    k: round(v / processes, 1) if v is not None else None
                    for k, v in rate({k: 100 * cpu[k]["viewers"] for k in cpu}, 1).items()
                },
                "event_loop": outputs[0].get("event_loop"),
            },
            "final_version": version,
            "converged": converged,
            "diverged_sample": [[v, d, n] for v, d, n in final if not (v == version and d == digest)][:5],
            "error_samples": [sample for out in outputs for sample in out.get("error_samples", [])][:5],
        }

    @staticmethod
    def _accepted(outputs: list[dict]):
        for out in outputs:
            for status, booking_id, seats in zip(
                out["status"], out["booking_id"], out["seat_ids"], strict=True
            ):
                if status in (201, 202) and booking_id:
                    yield booking_id, status, seats

    def _summarise(self, strategy, scenario, outputs, wall, generator_cpu) -> dict:
        statuses: dict[int, int] = {}
        latencies: list[float] = []
        by_kind: dict[str, list[float]] = {}
        generator_wall = max(o["wall_seconds"] for o in outputs)
        last_answer = 0.0
        for out in outputs:
            for kind, status, latency, done in zip(
                out["kind"], out["status"], out["latency_ms"], out["done_at"], strict=True
            ):
                statuses[status] = statuses.get(status, 0) + 1
                latencies.append(latency)
                by_kind.setdefault(kind, []).append(latency)
                last_answer = max(last_answer, done)
        requests = sum(statuses.values())
        mixed = scenario in sc.MIXED
        duration = generator_wall if mixed else (last_answer or generator_wall)
        transport = statuses.get(-1, 0)
        timeouts = statuses.get(-2, 0)
        server_errors = sum(n for s, n in statuses.items() if s >= 500)
        ok_read = statuses.get(200, 0)
        run = {
            "strategy": strategy,
            "scenario": scenario,
            "requests": requests,
            "concurrency": sum(o.get("concurrency", 0) for o in outputs) or self._concurrency(scenario),
            "duration_seconds": round(duration, 3),
            "status_counts": {str(k): v for k, v in sorted(statuses.items())},
            "answered": requests - transport - timeouts,
            "errors_detail": {"5xx": server_errors, "timeouts": timeouts, "connection": transport},
            "throughput_rps": round(requests / duration, 1) if duration else 0.0,
            "latency_ms": percentiles(latencies),
            "confirm_latency_ms": None,
            "generator": {
                "processes": len(outputs),
                "cpu_seconds": round(generator_cpu, 2),
                "cpu_percent_of_one_core": round(100 * generator_cpu / (generator_wall * len(outputs)), 1)
                if generator_wall
                else 0.0,
                "wall_seconds": round(generator_wall, 3),
            },
        }
        received = sum(size for out in outputs for size in out.get("bytes", ()))
        run["bytes_received"] = received
        run["bytes_per_response"] = round(received / requests) if requests else None
        run["bytes_per_second"] = round(received / duration) if duration else None
        samples = [sample for out in outputs for sample in out.get("error_samples", [])]
        if samples:
            run["error_samples"] = samples[:5]  # what the unexpected answers said
        if mixed:
            run["latency_ms_by_kind"] = {kind: percentiles(values) for kind, values in by_kind.items()}
            run["bookings_requested"] = len(by_kind.get("book", []))
            run["people_reused"] = sum(o.get("people_reused", 0) for o in outputs)
        if scenario in sc.ONCE:  # /ping and the read bursts: a 200 is a success
            run["success"] = ok_read
            run["rejected"] = 0
            run["errors"] = requests - ok_read
        else:
            # success/rejected/errors are completed by the audit (202 -> CONFIRMED / REJECTED / FAILED)
            run["success"] = statuses.get(201, 0) + (ok_read if mixed else 0)
            run["rejected"] = statuses.get(409, 0)
            run["errors"] = requests - run["success"] - run["rejected"] - statuses.get(202, 0)
        return run

    def _concurrency(self, scenario: str) -> int:
        p = self.plan.profile
        return p.mixed_concurrency if scenario in sc.MIXED else p.concurrency

    def _apply_audit(self, run: dict, strategy: str, outputs, accepted, audit: dict) -> None:
        rows = audit.pop("rows")
        confirm: list[float] = []
        final = {"CONFIRMED": 0, "REJECTED": 0, "FAILED": 0, "CANCELLED": 0}
        sent_at = {}
        for out in outputs:
            for status, booking_id, sent in zip(
                out["status"], out["booking_id"], out["sent_at"], strict=True
            ):
                if status == 202 and booking_id:
                    sent_at[booking_id] = sent
        for booking_id, status, _ in accepted:
            if status != 202:
                continue
            row = rows.get(booking_id)
            if row is None or row[0] not in final:
                continue  # lost: counted by the audit
            final[row[0]] += 1
            confirm.append(max(0.0, (row[1] - sent_at[booking_id]) * 1000))
        run["success"] += final["CONFIRMED"]
        run["rejected"] += final["REJECTED"]
        run["errors"] += final["FAILED"] + final["CANCELLED"]
        run["accepted"] = len(accepted)
        run["async_outcomes"] = final if strategy in sc.ASYNC_STRATEGIES else None
        if strategy in sc.ASYNC_STRATEGIES and confirm:
            run["confirm_latency_ms"] = {k: v for k, v in percentiles(confirm).items()}
            written = sorted(rows[b][1] for b, s, _ in accepted if s == 202 and b in rows)
            if len(written) >= 50 and written[-1] > written[0]:
                run["persist_rps"] = round((len(written) - 1) / (written[-1] - written[0]), 1)
            run["confirm_span_seconds"] = round(
                max(rows[b][1] for b in sent_at if b in rows) - min(sent_at.values()), 3
            )
        run["unanswered_bookings"] = audit["audit"]["unanswered_bookings"]
        run["double_bookings"] = audit["double_bookings"]
        run["lost_bookings"] = audit["lost_bookings"]
        run["drift"] = audit["drift"]
        run["audit"] = audit["audit"]


def latest_results_dir(root: Path = RESULTS_DIR, bench: str = "full") -> Path | None:
    """The newest results folder (folder names are UTC timestamps) of a `bench` run (full, not smoke) that ran
    every scenario: a run of a few (`--scenarios`) is a measurement of its own, not the table's source."""
    for path in sorted(root.glob("*/results.json"), reverse=True):
        with contextlib.suppress(OSError, ValueError, KeyError):
            results = json.loads(path.read_text())
            ran = {run["scenario"] for run in results["runs"]}
            if results.get("bench") == bench and set(sc.SCENARIOS) <= ran:
                return path.parent
    return None


def default_out_dir() -> Path:
    return RESULTS_DIR / datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
