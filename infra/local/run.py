"""`make run`: everything the service needs, on one machine, in one command; Ctrl-C stops it all.

1. the stage's settings (.chalice/config.json, env wins), MySQL and Redis checked
2. the AWS emulator at the stage's AWS_ENDPOINT_URL, unless one already answers there: LocalStack in host mode
   (infra/local/localstack.py, its own venv on Python 3.13+, installed on first use) wherever it can run, else
   moto server (infra/local/emulator.py); --emulator localstack|moto picks one
3. migrations, queues and streams (infra/provision.py), the demo event
4. the HTTP server (infra/local/wsgi.py: Chalice behind granian) and the worker (infra/local/worker.py:
   every SQS and Kinesis event source of the app, delivered to the real handlers, in WORKER_PROCESSES
   processes, default one per core, which it supervises and stops with itself)
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from urllib.parse import urlsplit

from infra.local import localstack
from infra.local.stage import PROJECT_DIR, apply_stage_environment
from infra.local.worker import default_checkpoint_file

EMULATORS = ("auto", "localstack", "moto")


def say(message: str) -> None:
    print(f"[run] {message}", flush=True)


def wait_until(check, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if check():
                return
        except Exception:
            pass
        if time.monotonic() > deadline:
            raise SystemExit(f"[run] {what} did not come up within {timeout:.0f} s")
        time.sleep(0.2)


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1):
            return True
    except urllib.error.HTTPError:
        return True  # it answered, even if with an error status
    except OSError:
        return False


def check_dependencies(settings) -> None:
    import pymysql
    import redis

    db = urlsplit(settings.database_url)
    try:
        pymysql.connect(
            host=db.hostname,
            port=db.port or 3306,
            user=db.username or "root",
            password=db.password or "",
            connect_timeout=3,
        ).close()
    except pymysql.err.MySQLError as exc:
        raise SystemExit(f"[run] MySQL is not reachable at {db.hostname}:{db.port or 3306}: {exc}") from None
    try:
        redis.Redis.from_url(settings.redis_url, socket_connect_timeout=3).ping()
    except redis.RedisError as exc:
        raise SystemExit(f"[run] Redis is not reachable at {settings.redis_url}: {exc}") from None


def spawn(*args: str) -> subprocess.Popen:
    # A session of its own: Ctrl-C in the terminal reaches only this process, which then stops the children
    # in order (stop_all). Were the emulator to get the terminal's SIGINT too, it would be gone while the
    # worker's pollers still call it, and shutdown would end with "Could not connect" warnings.
    return subprocess.Popen([sys.executable, *args], cwd=PROJECT_DIR, start_new_session=True)


def choose_emulator(requested: str) -> tuple[str, str]:
    """The emulator to start ("localstack" or "moto") and why."""
    if requested != "auto":
        return requested, f"--emulator {requested}"
    reason = localstack.unavailable_reason()
    if reason:
        return "moto", f"LocalStack host mode cannot run here: {reason}"
    return "localstack", (
        "the default wherever Python 3.13+ exists: its SQS keeps its speed as queues grow, moto server's "
        "does not (docs/deploy.md: LocalStack without Docker); EMULATOR=moto picks moto server"
    )


def start_emulator(
    endpoint: str, children: list[subprocess.Popen], stage: str, ledger_dir: str, requested: str = "auto"
) -> None:
    if answers(endpoint):
        kind = "LocalStack" if localstack.health(endpoint) is not None else "an AWS emulator"
        say(f"{kind} already answering at {endpoint}; using it")
        return
    # A new emulator has new, empty streams: positions read in the old ones mean nothing there.
    forget_stream_positions(default_checkpoint_file(stage), ledger_dir)
    parts = urlsplit(endpoint)
    port = parts.port or 5000
    emulator, why = choose_emulator(requested)
    if emulator == "localstack":
        try:
            localstack.ensure_installed(report=say)  # first use on this machine: its venv, with progress
        except (localstack.LocalStackUnavailable, RuntimeError) as exc:
            if requested == "localstack":
                raise SystemExit(f"[run] LocalStack host mode cannot start: {exc}") from None
            emulator, why = "moto", f"LocalStack's venv could not be installed ({str(exc).splitlines()[0]})"
    if emulator == "localstack":
        say(f"AWS emulator: LocalStack (host mode, no Docker) at {endpoint} — {why}")
        root = os.path.join(os.path.dirname(default_checkpoint_file(stage)), "localstack")
        host = parts.hostname or "127.0.0.1"
        serve = ["-m", "infra.local.localstack", "serve", "--host", host, "--port", str(port), "--root", root]
        children.append(spawn(*serve))
        wait_until(lambda: localstack.is_healthy(endpoint), "LocalStack", timeout=120)
        return
    say(f"AWS emulator: moto server at {endpoint} — {why}")
    children.append(spawn("-m", "infra.local.emulator", "--port", str(port)))
    wait_until(lambda: answers(endpoint), "the AWS emulator")


def forget_stream_positions(checkpoint_file: str, ledger_dir: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(checkpoint_file)
    shutil.rmtree(ledger_dir, ignore_errors=True)


def prepare(settings) -> None:
    from chalicelib.bootstrap import container
    from infra.migrate import migrate
    from infra.provision import QueuePair, provision
    from infra.seed import seed_demo_event

    say(f"migrations: {migrate(settings.database_url)} applied")
    for name, resource in provision(settings).items():
        if isinstance(resource, QueuePair):
            say(f"queue {name}: {resource.queue_url} (DLQ {resource.dlq_url})")
        else:
            say(f"stream {name}: {resource}")
    event = seed_demo_event(container())
    if container().catalogue.build_id_filter():
        say("catalogue filter: built from MySQL")
    performance = event.performances[0]
    say(
        f"demo event {event.event_id} '{event.name}', performance {performance.performance_id}, "
        f"seats {performance.sections[0].first_seat_id}-{performance.sections[-1].last_seat_id}"
    )


def stop_all(children: list[subprocess.Popen], timeout: float = 15) -> None:
    """Reverse start order, each child gone before the next is asked: the server and worker finish their
    in-flight work while the emulator still answers them."""
    for child in reversed(children):
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
        try:
            child.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--stage", default=os.environ.get("CHALICE_STAGE", "local"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
    parser.add_argument("--workers", type=int, default=int(os.environ.get("WEB_WORKERS", "2")))
    parser.add_argument(
        "--emulator",
        choices=EMULATORS,
        default=os.environ.get("EMULATOR") or "auto",
        help="the AWS emulator to start: LocalStack host mode, moto server, or auto (LocalStack if it can)",
    )
    args = parser.parse_args()
    apply_stage_environment(args.stage)
    from chalicelib.config import settings

    check_dependencies(settings)
    children: list[subprocess.Popen] = []
    # Ctrl-C and SIGTERM both stop everything. SIGINT is installed explicitly: a shell that starts this in
    # the background would otherwise leave it ignored.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        if settings.aws_endpoint_url:
            start_emulator(
                settings.aws_endpoint_url, children, args.stage, settings.ledger_dir, args.emulator
            )
        prepare(settings)
        base = f"http://127.0.0.1:{args.port}"
        children.append(
            spawn(
                "-m",
                "infra.local.wsgi",
                "--host",
                "127.0.0.1",
                "--port",
                str(args.port),
                "--workers",
                str(args.workers),
                "--stage",
                args.stage,
            )
        )
        children.append(spawn("-m", "infra.local.worker", "--stage", args.stage))
        wait_until(lambda: answers(f"{base}/health"), "the HTTP server")
        say(f"serving {base}  (API docs: {base}/docs) — Ctrl-C stops everything")
        while all(child.poll() is None for child in children):
            time.sleep(0.5)
        raise SystemExit("[run] a component exited unexpectedly; stopping the rest")
    except KeyboardInterrupt:
        say("stopping")
    finally:
        stop_all(children)


if __name__ == "__main__":
    main()
