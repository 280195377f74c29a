"""`make bench-compare`: this tree against an earlier commit, measured in one session, turn and turn about.

    python -m loadtests.bench.compare --base 8620868
    python -m loadtests.bench.compare --base 8620868 --rounds 3 --scenarios baseline,hot-seat --requests 5000
    python -m loadtests.bench.compare --report loadtests/results/<timestamp>-compare   (the table again)

The base commit is checked out in a git worktree of its own (removed afterwards) and benched with this venv;
then this tree; `--rounds` times, alternating, so a noisy neighbour on the shared machine weighs on both
sides alike. Each bench is the ordinary `python -m loadtests.bench` (its own stack, database and audit; no
profiles, no emulator ceilings). The answer is one table: server CPU per request (all granian workers; the
measure of what a change adds to the hot path), first as a multiple of the same bench's do-nothing `/ping`
(the figure to quote: the machine's mood cancels out within a bench, not between two), then in ms, MySQL's
and the whole stack's CPU per request, and req/s, as base, this tree and the ratio, for every strategy and
scenario; written to <out>/compare.md with every bench's own results folder beside it.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections import defaultdict
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path

from loadtests.bench.report import server_ms_per_request
from loadtests.bench.runner import RESULTS_DIR

PROJECT = Path(__file__).resolve().parents[2]
DEFAULT_SCENARIOS = "baseline,hot-seat,hot-section"
Key = tuple[str, str]  # (strategy or "(do-nothing)", scenario)


def per_request_ms(run: dict, component: str | None) -> float | None:
    cpu = run.get("cpu_seconds_during_load") or {}
    seconds = sum(cpu.values()) if component is None else cpu.get(component)
    return 1000 * seconds / run["requests"] if seconds is not None and run["requests"] else None


def measures(run: dict, ping_ms: float | None) -> dict[str, float | None]:
    server = server_ms_per_request(run)
    return {
        # The same server's do-nothing request in the same bench: a noisy neighbour weighs on both alike.
        "server ÷ /ping": server / ping_ms if server and ping_ms else None,
        "server ms/req": server,
        "mysql ms/req": per_request_ms(run, "mysql"),
        "stack ms/req": per_request_ms(run, None),
        "req/s": run.get("throughput_rps"),
    }


def collect(folders: Iterable[Path]) -> dict[Key, dict[str, list[float]]]:
    """(strategy, scenario) -> measure -> the values of every round."""
    found: dict[Key, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for folder in folders:
        runs = json.loads((folder / "results.json").read_text())["runs"]
        ping_ms = next((server_ms_per_request(r) for r in runs if r["scenario"] == "baseline"), None)
        for run in runs:
            key = (run["strategy"] or "(do-nothing)", run["scenario"])
            for name, value in measures(run, ping_ms).items():
                if value is not None:
                    found[key][name].append(value)
    return found


def table(base: dict, head: dict, base_rev: str) -> str:
    names = ["server ÷ /ping", "server ms/req", "mysql ms/req", "stack ms/req", "req/s"]
    header = ["strategy", "scenario"] + [f"{n}: {base_rev} / this / ratio" for n in names]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for key in sorted(set(base) & set(head), key=lambda k: (k[1], k[0])):
        cells = [f"`{key[0]}`", key[1]]
        for name in names:
            old, new = base[key].get(name), head[key].get(name)
            if not old or not new:
                cells.append("—")
                continue
            a, b = statistics.mean(old), statistics.mean(new)
            ratio = f"**{b / a:.2f}**" if a else "—"
            cells.append(f"{a:.3g} / {b:.3g} / {ratio}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def bench(tree: Path, out: Path, passthrough: list[str]) -> Path:
    command = [sys.executable, "-m", "loadtests.bench", "--out", str(out), "--no-profile", "--no-ceilings"]
    subprocess.run([*command, "--no-charts", *passthrough], cwd=tree, check=True)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtests.bench.compare", description=__doc__)
    parser.add_argument("--base", help="the commit to compare against")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--scenarios", default=DEFAULT_SCENARIOS)
    parser.add_argument("--out", type=Path, help="default: loadtests/results/<UTC timestamp>-compare")
    parser.add_argument("--report", type=Path, help="only write the table of an earlier comparison's folder")
    args, passthrough = parser.parse_known_args(argv)
    if args.report is not None:
        return write_report(args.report)
    if args.base is None:
        parser.error("--base is required (or --report)")
    base_rev = _git("rev-parse", "--short=7", args.base)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out = args.out or RESULTS_DIR / f"{stamp}-compare"
    out.mkdir(parents=True, exist_ok=True)
    worktree = Path(tempfile.mkdtemp(prefix=f"bench-base-{base_rev}-"))
    subprocess.run(["git", "worktree", "add", "--detach", str(worktree), base_rev], cwd=PROJECT, check=True)
    passthrough = ["--scenarios", args.scenarios, *passthrough]
    try:
        for round_number in range(1, args.rounds + 1):
            for side, tree in (("base", worktree), ("head", PROJECT)):
                bench(tree, out / f"{side}-{round_number}", passthrough)
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(worktree)], cwd=PROJECT, check=False)
        shutil.rmtree(worktree, ignore_errors=True)
    (out / "revisions.json").write_text(
        json.dumps(
            {"base": base_rev, "head": _git("describe", "--always", "--dirty"), "scenarios": args.scenarios}
        )
    )
    return write_report(out)


def write_report(out: Path) -> int:
    revisions = json.loads((out / "revisions.json").read_text())
    base = sorted(out.glob("base-*"))
    head = sorted(out.glob("head-*"))
    report = (
        f"# Bench comparison: `{revisions['head']}` against `{revisions['base']}`\n\n"
        f"{len(head)} round(s), alternating base and this tree, scenarios {revisions['scenarios']}; each cell"
        " is the mean over the rounds, then the ratio this / base (server = the granian workers; stack ="
        " server, consumers, emulator, MySQL, Redis).\n\n"
        + table(collect(base), collect(head), revisions["base"])
        + "\n"
    )
    (out / "compare.md").write_text(report)
    print(report)
    return 0


def _git(*args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=PROJECT, check=True, capture_output=True, text=True
    ).stdout.strip()


if __name__ == "__main__":
    sys.exit(main())
