"""`--wrk`: the refusal path measured with a C load generator (wrk), beside the bench's own (load.py).

The bench's generator is Python (aiohttp on uvloop): ~0.2 ms of CPU per request, more than the server spends
on `/ping`, on the same two cores. Several processes (`--generators`) take it off one core, but it still
takes the larger share of the machine, so `/ping`'s req/s measures the generator as much as the server and
the bursts' "÷ /ping" ratios look better than the server is. wrk (C, a few µs per request) leaves the cores
to the server. It does not replace the bursts (their per-request latencies, booking ids and audit stay
load.py's); it adds, after them, the issue's throughput-only measurement:

    /ping                 wrk -t THREADS -c CONNECTIONS -d SECONDS, first in every round and once at the end
    hot-seat refusals     per strategy: a fresh one-section performance, its first seat sold by one request,
                          then wrk POSTs that seat as each of WRK_USERS users in turn (their tokens minted
                          at POST /dev/token before any measurement and written into the Lua script): every
                          answer a 409 refused from the seat state (any other status is counted and
                          reported); audited afterwards (the one sale, nothing else, Redis and MySQL
                          agreeing); ROUNDS rounds, in turn

Each measurement: req/s, and the server's CPU per request (psutil, all granian processes, as the bursts').
wrk is optional: `apt-get install wrk` (Debian/Ubuntu) or `brew install wrk`; without it `--wrk` is refused
with that hint and the bench runs as before.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from loadtests.bench import scenarios as sc
from loadtests.bench import signin

# The users the refusals are asked by, in turn (the booking's user is the token's: the body names none).
# A refusal is decided from the seat's state, not the user's, so a thousand stand for "a new user each
# request" as well as more would; their tokens cost ~0.4 s to mint and 200 kB of script.
WRK_USERS = 1_000

# The same seat, every request as the next user of the list (each thread from its own place in it); the
# status of every answer counted (done() reads them back).
HOT_SEAT_SCRIPT = """
wrk.method = "POST"
wrk.body = '{"seat_ids":[%(seat)d]}'
local authorizations = {}
for token in ([[
%(tokens)s
]]):gmatch("%%S+") do
  authorizations[#authorizations + 1] = "Bearer " .. token
end
local headers = {["Content-Type"] = "application/json"}
local counter = 0
local threads = {}
statuses = {}
function setup(thread)
  thread:set("id", #threads + 1)
  table.insert(threads, thread)
end
function init(args)
  counter = math.floor((id - 1) * #authorizations / %(threads)d)
end
function request()
  counter = counter + 1
  headers["Authorization"] = authorizations[counter %% #authorizations + 1]
  return wrk.format(nil, nil, headers)
end
function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end
function done(summary, latency, requests)
  local totals = {}
  for _, thread in ipairs(threads) do
    for status, n in pairs(thread:get("statuses")) do
      totals[status] = (totals[status] or 0) + n
    end
  end
  for status, n in pairs(totals) do
    io.write(string.format("status %%d %%d\\n", status, n))
  end
end
"""


def available() -> str | None:
    return shutil.which("wrk")


def run_wrk(url: str, threads: int, connections: int, seconds: float, script: Path | None = None) -> dict:
    command = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--latency"]
    if script is not None:
        command += ["-s", str(script)]
    out = subprocess.run([*command, url], capture_output=True, text=True, check=True).stdout
    requests = int(re.search(r"(\d+) requests in", out).group(1))
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    statuses = {int(s): int(n) for s, n in re.findall(r"^status (\d+) (\d+)$", out, re.MULTILINE)}
    p99 = re.search(r"^\s+99%\s+([\d.]+)(us|ms|s)$", out, re.MULTILINE)
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}
    return {
        "requests": requests,
        "throughput_rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        "socket_errors": sum(int(n) for n in errors.groups()) if errors else 0,
        "status_counts": {str(k): v for k, v in sorted(statuses.items())},
        "latency_p99_ms": round(float(p99.group(1)) * scale[p99.group(2)], 2) if p99 else None,
    }


def measure(
    bench, strategies: tuple[str, ...], threads: int, connections: int, seconds: float, rounds: int = 3
) -> dict:
    """The wrk measurements of one bench (bench: the runner's Bench, its stack up) -> results["wrk"]: every
    measurement, and per strategy the mean over the rounds against the mean of every /ping measurement
    (interleaved, so a neighbour's load on the shared machine weighs on both)."""
    from loadtests.bench.profiling import CpuMeter

    stack = bench.stack
    work = Path(tempfile.mkdtemp(prefix="bench-wrk-"))

    def measured(label: str, url: str, script: Path | None = None) -> dict:
        meter = CpuMeter({"server": stack.server_pids()})
        meter.start()
        result = run_wrk(url, threads, connections, seconds, script)
        server = meter.stop()["server"]
        result["label"] = label
        result["server_ms_per_request"] = (
            round(1000 * server / result["requests"], 3) if result["requests"] else None
        )
        bench.say(
            f"wrk {label}: {result['throughput_rps']:,.0f} req/s, server "
            f"{result['server_ms_per_request']} ms/request"
        )
        return result

    ping_url = f"{stack.base_url}{sc.NOOP_PATH}"
    out: dict = {
        "generator": (
            f"wrk {threads} threads, {connections} connections, {seconds:g} s per measurement, {rounds} "
            "round(s) of /ping then every strategy in turn, /ping once more at the end"
        ),
        "ping": [],
        "hot_seat": [],
    }
    sold: dict[str, tuple[sc.Layout, dict, Path]] = {}
    # Every user signed in before any measurement: the sellers, and the refused (one list for all rounds).
    stamp = int(time.time() * 1000) % 10**8
    sellers = signin.sign_in(stack.base_url, [f"wrk-sale-{strategy}-{stamp}" for strategy in strategies])
    refused = signin.sign_in(stack.base_url, [f"wrk-{stamp}-{k}" for k in range(WRK_USERS)])
    tokens = "\n".join(refused.values())
    try:
        for strategy in strategies:  # every seat sold (and decided) before any measurement
            layout = bench._new_performance(sc.HOT_SEAT, strategy)
            seat = layout.sections[0][0][0]
            url = f"{stack.base_url}/performances/{layout.performance_id}/bookings"
            sale = bench_sale(url, seat, sellers[f"wrk-sale-{strategy}-{stamp}"])
            bench._auditor.wait_drained(layout.performance_id, {sale["booking_id"]}, 120)
            script = work / f"{strategy}.lua"
            script.write_text(HOT_SEAT_SCRIPT % {"tokens": tokens, "seat": seat, "threads": threads})
            sold[strategy] = (layout, sale, script)
        for number in range(rounds):
            out["ping"].append(measured("/ping", ping_url))
            for strategy, (layout, _, script) in sold.items():
                url = f"{stack.base_url}/performances/{layout.performance_id}/bookings"
                result = measured(f"{strategy} hot-seat refusals", url, script)
                result.update({"strategy": strategy, "round": number + 1})
                out["hot_seat"].append(result)
        out["ping"].append(measured("/ping", ping_url))
        for strategy, (layout, sale, _) in sold.items():
            accepted = [(sale["booking_id"], sale["status"], [layout.sections[0][0][0]])]
            drained = bench._auditor.wait_drained(layout.performance_id, {sale["booking_id"]}, 120)
            audit = bench._auditor.audit(layout.performance_id, accepted, bench._reconciler)
            for result in out["hot_seat"]:
                if result["strategy"] != strategy:
                    continue
                others = sum(n for status, n in result["status_counts"].items() if status != "409")
                result.update(
                    {
                        "not_409": others,
                        "double_bookings": audit["double_bookings"],
                        "lost_bookings": audit["lost_bookings"],
                        "drift": audit["drift"],
                        "drained": drained["drained"],
                        "unanswered_bookings": audit["audit"]["unanswered_bookings"],
                    }
                )
                result["invariants_ok"] = (
                    others == 0
                    and result["socket_errors"] == 0
                    and result["unanswered_bookings"] == 0
                    and audit["double_bookings"] == 0
                    and audit["lost_bookings"] == 0
                    and audit["drift"] == 0
                )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    ping_rps = sum(p["throughput_rps"] for p in out["ping"]) / len(out["ping"])
    ping_ms = [p["server_ms_per_request"] for p in out["ping"] if p["server_ms_per_request"]]
    out["ping_rps"] = round(ping_rps, 1)
    out["ping_server_ms"] = round(sum(ping_ms) / len(ping_ms), 3) if ping_ms else None
    summary = []
    for strategy in sold:
        rounds_of = [r for r in out["hot_seat"] if r["strategy"] == strategy]
        rps = sum(r["throughput_rps"] for r in rounds_of) / len(rounds_of)
        served = [r["server_ms_per_request"] for r in rounds_of if r["server_ms_per_request"]]
        server = sum(served) / len(served) if served else None
        ping = out["ping_server_ms"]
        summary.append(
            {
                "strategy": strategy,
                "throughput_rps": round(rps, 1),
                "share_of_ping": round(rps / ping_rps, 3) if ping_rps else None,
                "server_ms_per_request": round(server, 3) if server else None,
                "cpu_x_ping": round(server / ping, 2) if server and ping else None,
                "invariants_ok": all(r["invariants_ok"] for r in rounds_of),
            }
        )
    out["summary"] = summary
    return out


def bench_sale(url: str, seat: int, token: str) -> dict:
    """The one sale before the refusals, as the token's user: -> {"booking_id", "status"}."""
    import json
    import urllib.request

    request = urllib.request.Request(
        url,
        data=json.dumps({"seat_ids": [seat]}).encode(),
        headers={"Content-Type": "application/json", **signin.bearer(token)},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        return {"booking_id": json.load(response)["booking_id"], "status": response.status}
