"""The embedded AWS emulator: moto's server in a thread of this process.

`python -m infra.local.emulator --port 5000` serves until Ctrl-C or SIGTERM (`make run` starts it so).
Moto keeps its state in memory: a restart starts with no queues (infra/provision.py creates them again).
"""

from __future__ import annotations

import argparse
import logging
import signal
import threading
from typing import Any

from moto.server import ThreadedMotoServer


def serialise_kinesis_puts() -> None:
    """Make moto's Kinesis keep every record it acknowledges.

    moto's `Shard.put_record` reads the shard's last sequence number and stores the record under the next one
    with no lock (its own comment: "this function is not safe for concurrency"). Its server is threaded, so
    two puts at once can get the same number: the second record replaces the first, and both callers are told
    theirs was stored. Real Kinesis never loses an acknowledged record; a stream_state race of 500 threads on
    a loaded machine lost one request here (its booking journaled PENDING, never decided). One lock around
    the put makes moto do what Kinesis promises; reads are untouched."""
    from moto.kinesis import models

    if getattr(models.Shard.put_record, "serialised", False):
        return
    unsafe_put = models.Shard.put_record
    lock = threading.Lock()

    def put_record(self: Any, *args: Any, **kwargs: Any) -> str:
        with lock:
            return unsafe_put(self, *args, **kwargs)

    put_record.serialised = True  # type: ignore[attr-defined]
    put_record.unsafe = unsafe_put  # type: ignore[attr-defined]  (what tests/unit/test_moto_kinesis.py shows)
    models.Shard.put_record = put_record


def start_moto_server(host: str = "127.0.0.1", port: int = 0) -> tuple[ThreadedMotoServer, str]:
    """Start moto's server; port 0 takes a free port. Returns the server and its endpoint URL.

    Port 0 goes to the OS as is and the bound port is read back afterwards: picking a "free" port first and
    binding it later would race with every other process doing the same (parallel test runs)."""
    serialise_kinesis_puts()
    server = ThreadedMotoServer(ip_address=host, port=port, verbose=False)
    server.start()  # returns once the socket is bound
    bound_host, bound_port = server.get_host_and_port()
    return server, f"http://{_url_host(bound_host)}:{bound_port}"


def stop_moto_server(server: ThreadedMotoServer) -> None:
    server.stop()


def _url_host(host: str) -> str:
    if host in ("0.0.0.0", "::"):
        return "127.0.0.1"  # the wildcard address is for binding; clients connect to loopback
    return f"[{host}]" if ":" in host else host


def main() -> None:
    # One access-log line per request drowns `make run`'s output (the worker long-polls continuously).
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5000)
    args = parser.parse_args()

    stopping = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stopping.set())
    server, endpoint = start_moto_server(args.host, args.port)
    print(f"[emulator] moto server at {endpoint} — Ctrl-C stops it", flush=True)
    try:
        while not stopping.wait(0.5):  # a timed wait, so signals are handled promptly
            pass
    finally:
        stop_moto_server(server)
        print("[emulator] stopped", flush=True)


if __name__ == "__main__":
    main()
