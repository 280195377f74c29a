"""The stack the bench measures, started and stopped by the bench itself: the production serving mode of
`make run` (infra/local/wsgi.py: the Chalice app behind granian, N worker processes), the consumers as a
process of their own (infra/local/worker.py: every SQS and Kinesis event source delivered to the real
handlers, as Lambda instances would get them) and an AWS emulator of its own (LocalStack in host mode; moto
server only where LocalStack cannot run).

Everything is the bench's own, so it runs next to `make run` and `make test` without touching their data:
its own database (default `booking_bench`, recreated at the start), Redis keys under its own prefix in its
own Redis db, queue and stream names of its own, its own ports, its own ledger directory and checkpoints.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from infra.local.stage import PROJECT_DIR, stage_environment

ADMIN_TOKEN = "bench-admin-token"
# The bench's users sign in at POST /dev/token (signin.py): the stack runs with DEV_TOKENS on and a signing
# key of its own, whatever the local stage's defaults become (at least 32 bytes: an HS256 key, RFC 7518).
TOKEN_SIGNING_KEY = "bench-token-signing-key-not-a-secret-0123456789"
# The booking-write rate limits (USER_RATE_LIMIT, ADDRESS_RATE_LIMIT) stay on, their two Redis calls part of
# every write's cost as in production, but they never refuse: every simulated user comes from 127.0.0.1 (a
# 10,000-request burst is one address's flood to the limiter), and wrk's refusals ask as each of a thousand
# users several times a second.
NEVER_REFUSING_RATE = 10**9


def settings_variables() -> set[str]:
    """Every environment variable the stack's configuration comes from (Settings', and localstack-client's
    LOCALSTACK_HOST): an inherited value of any of them (the test session's, a developer's shell) must not
    leak into the bench's stack."""
    from chalicelib.config import Settings

    return {*Settings.env_names(), "LOCALSTACK_HOST"}


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def answers(url: str, timeout: float = 1.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout):
            return True
    except urllib.error.HTTPError:
        return True
    except OSError:
        return False


def wait_for(check, what: str, timeout: float, process: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(Exception):
            if check():
                return
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode} while starting")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not come up within {timeout:.0f} s")
        time.sleep(0.2)


def redis_client(url: str, cluster: bool = False):
    """A plain (unguarded) client: redis-py's cluster client when `cluster` (url: a seed node)."""
    import redis
    from redis.cluster import RedisCluster

    if cluster:
        return RedisCluster.from_url(url, decode_responses=True)
    return redis.Redis.from_url(url, decode_responses=True)


@dataclass
class StackConfig:
    name: str = "bench"
    database_url: str = "mysql://root@127.0.0.1:3306/booking_bench"
    redis_url: str = "redis://127.0.0.1:6379/13"
    key_prefix: str = "bench"
    http_port: int = 0  # 0: a free one
    workers: int = 2
    threads: int = 16
    backpressure: int | None = None  # connections per granian worker at once (None: granian's default)
    consumer_concurrency: int = 2  # concurrent batches per queue, in each consumer process
    # infra/local/worker.py --processes: consumer processes (SQS polled by all, each Kinesis shard by one)
    consumer_processes: int = field(default_factory=lambda: os.cpu_count() or 1)
    # Lambda's Kinesis event source mapping reads each shard about once a second; the worker's default (0.2 s)
    # is for snappy development, and on LocalStack each idle read costs CPU the server then lacks.
    kinesis_poll_interval: float = 1.0
    emulator: str = "auto"  # auto | localstack | moto
    state_dir: Path = field(default_factory=lambda: Path("/tmp/seat-booking-bench"))
    log_dir: Path = field(default_factory=lambda: Path("/tmp/seat-booking-bench/logs"))
    drop_database_at_exit: bool = False
    # A local 3-primary Redis Cluster of the bench's own (infra/local/redis_cluster.py) instead of redis_url,
    # the app on it with REDIS_CLUSTER=1.
    redis_cluster: bool = False
    # HOLD_SECONDS of the bench's stack (None: the local stage's, 600 s): hold-and-abandon's short holds.
    hold_seconds: float | None = None
    extra_env: dict[str, str] = field(default_factory=dict)


class Stack:
    def __init__(self, config: StackConfig, say=print) -> None:
        self.config = config
        self.say = say
        self.http_port = config.http_port or free_port()
        self.base_url = f"http://127.0.0.1:{self.http_port}"
        self.emulator_port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.emulator_port}"
        self.emulator_name = ""
        self.emulator_note = ""
        self._localstack = None
        self._emulator_process: subprocess.Popen | None = None
        self.server: subprocess.Popen | None = None
        self.worker: subprocess.Popen | None = None
        self._paused: list[int] = []
        self._logs: list = []
        self._pending_streams: threading.Thread | None = None
        self.redis_cluster = None
        self.redis_url = config.redis_url
        if config.redis_cluster:
            from infra.local.redis_cluster import LocalRedisCluster

            self.redis_cluster = LocalRedisCluster()  # ports chosen now, servers started by prepare_data()
            self.redis_url = self.redis_cluster.url
        self.env = self._environment()

    # --- environment ----------------------------------------------------------------------------------
    def _environment(self) -> dict[str, str]:
        from chalicelib.config import Settings

        c = self.config
        inherited = {k: v for k, v in os.environ.items() if k not in settings_variables()}
        # The local stage, on the bench's own database, Redis keys, emulator, queues, streams and ledger.
        own = Settings.from_env(stage_environment("local")).replace(
            database_url=c.database_url,
            redis_url=self.redis_url,
            redis_cluster=c.redis_cluster,
            redis_key_prefix=c.key_prefix,
            aws_endpoint_url=self.endpoint,
            aws_region="us-east-1",
            booking_queue_name=f"{c.name}-booking-events",
            booking_dlq_name=f"{c.name}-booking-events-dlq",
            fifo_queue_name=f"{c.name}-booking-requests.fifo",
            fifo_dlq_name=f"{c.name}-booking-requests-dlq.fifo",
            request_stream_name=f"{c.name}-booking-requests-stream",
            changelog_stream_name=f"{c.name}-booking-decisions-changelog",
            ledger_dir=str(c.state_dir / "ledger"),
            admin_token=ADMIN_TOKEN,
            dev_tokens=True,
            token_signing_key=TOKEN_SIGNING_KEY,
            user_rate_limit=NEVER_REFUSING_RATE,
            address_rate_limit=NEVER_REFUSING_RATE,
        )
        if c.hold_seconds is not None:
            own = own.replace(hold_seconds=c.hold_seconds)
        env = {
            **inherited,
            **own.as_environment(),
            # The AWS SDK's own: the emulator takes any credentials, but boto3 insists on some.
            "AWS_ACCESS_KEY_ID": "local",
            "AWS_SECRET_ACCESS_KEY": "local",
            "AWS_DEFAULT_REGION": own.aws_region,
            "PYTHONUNBUFFERED": "1",
            **c.extra_env,
        }
        env.pop("AWS_SESSION_TOKEN", None)
        return env

    def settings(self):
        from chalicelib.config import Settings

        return Settings.from_env(self.env)

    # --- emulator -------------------------------------------------------------------------------------
    def start_emulator(self) -> None:
        from infra.local import localstack

        requested = self.config.emulator
        reason = None
        if requested in ("auto", "localstack"):
            reason = localstack.unavailable_reason()
            if reason is None:
                try:
                    localstack.ensure_installed(report=self.say)
                except (localstack.LocalStackUnavailable, RuntimeError) as exc:
                    reason = str(exc).splitlines()[0]
            if reason is None:
                instance = localstack.LocalStack(
                    self.emulator_port, self.config.state_dir / "localstack", report=self.say
                )
                try:
                    instance.start()
                    self._localstack = instance
                    self.emulator_name = "LocalStack (host mode)"
                    self.emulator_note = f"up in {instance.startup_seconds:.1f} s"
                    return
                except (localstack.LocalStackUnavailable, RuntimeError) as exc:
                    reason = str(exc).splitlines()[0]
            if requested == "localstack":
                raise RuntimeError(f"LocalStack host mode cannot run here: {reason}")
        self._emulator_process = self._spawn(
            "emulator", "-m", "infra.local.emulator", "--port", str(self.emulator_port)
        )
        wait_for(lambda: answers(self.endpoint), "moto server", 30, self._emulator_process)
        self.emulator_name = "moto server"
        self.emulator_note = f"LocalStack could not run: {reason}" if reason else "--emulator moto"

    def _stop_emulator(self) -> None:
        if self._localstack is not None:
            self._localstack.stop()
        if self._emulator_process is not None and self._emulator_process.poll() is None:
            self._emulator_process.terminate()
            try:
                self._emulator_process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._emulator_process.kill()

    def emulator_pids(self) -> list[int]:
        process = self._localstack._process if self._localstack else self._emulator_process
        return [process.pid] if process is not None and process.poll() is None else []

    # --- data -----------------------------------------------------------------------------------------
    def prepare_data(self) -> None:
        """A fresh database (dropped, migrated), no Redis key under the prefix, queues and streams."""
        from chalicelib.config import Settings
        from infra.migrate import migrate

        settings = Settings.from_env(self.env)
        # The emulator's first Kinesis call starts its Kinesis engine (seconds): meanwhile, the database.
        streams = threading.Thread(target=self._create_streams, args=(settings,))
        streams.start()
        self.drop_database()
        if self.redis_cluster is not None and not self.redis_cluster.nodes[0].running():
            self.redis_cluster.start()
            self.say(f"Redis Cluster: {len(self.redis_cluster.nodes)} primaries, seed {self.redis_url}")
        self.forget_redis_keys()
        shutil.rmtree(self.config.state_dir / "ledger", ignore_errors=True)
        with contextlib.suppress(FileNotFoundError):
            (self.config.state_dir / "kinesis-checkpoints.json").unlink()
        migrate(settings.database_url)
        self._pending_streams = streams  # joined in start_app(), once the server is starting

    def _provision(self) -> None:
        from infra.provision import provision

        if self._pending_streams is not None:
            self._pending_streams.join()
            self._pending_streams = None
        provision(self.settings())

    def _create_streams(self, settings) -> None:
        """Both streams created at once and waited for at a short interval (provision() would create them one
        after the other, polling each once a second): seconds off every start."""
        import boto3

        kinesis = boto3.client(
            "kinesis",
            endpoint_url=self.endpoint,
            region_name=settings.aws_region,
            aws_access_key_id="local",
            aws_secret_access_key="local",
        )
        names = (settings.request_stream_name, settings.changelog_stream_name)
        for name in names:
            with contextlib.suppress(kinesis.exceptions.ResourceInUseException):
                kinesis.create_stream(StreamName=name, ShardCount=settings.stream_shard_count)
        for name in names:
            kinesis.get_waiter("stream_exists").wait(
                StreamName=name, WaiterConfig={"Delay": 0.2, "MaxAttempts": 300}
            )

    def drop_database(self) -> None:
        import pymysql

        parts = urlsplit(self.config.database_url)
        connection = pymysql.connect(
            host=parts.hostname,
            port=parts.port or 3306,
            user=parts.username or "root",
            password=parts.password or "",
        )
        try:
            with connection.cursor() as cursor:
                cursor.execute(f"DROP DATABASE IF EXISTS `{parts.path.lstrip('/')}`")
        finally:
            connection.close()

    def redis_client(self):
        """A plain client of the bench's Redis (a cluster client with --redis-cluster): set-up, audit."""
        return redis_client(self.redis_url, self.config.redis_cluster)

    def forget_redis_keys(self) -> None:
        if self.redis_cluster is not None and not self.redis_cluster.nodes[0].running():
            return  # not started (yet, or any more): nothing to forget
        client = self.redis_client()
        try:
            for key in client.scan_iter(match=f"{self.config.key_prefix}:*", count=1000):
                client.delete(key)
        finally:
            client.close()

    # --- server and worker ----------------------------------------------------------------------------
    def _spawn(self, name: str, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
        self.config.log_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.config.log_dir / f"{name}.log", "ab")  # noqa: SIM115 (closed in stop())
        self._logs.append(log)
        return subprocess.Popen(
            [sys.executable, *args],
            cwd=PROJECT_DIR,
            env=env or self.env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )

    def start_app(self) -> None:
        c = self.config
        self.server = self._spawn(
            "server",
            "-m",
            "infra.local.wsgi",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.http_port),
            "--workers",
            str(c.workers),
            "--threads",
            str(c.threads),
            "--stage",
            "local",
            *(("--backpressure", str(c.backpressure)) if c.backpressure else ()),
        )
        self._provision()  # queues and streams, while granian starts
        self.worker = self._spawn(
            "worker",
            "-m",
            "infra.local.worker",
            "--stage",
            "local",
            "--concurrency",
            str(c.consumer_concurrency),
            "--processes",
            str(c.consumer_processes),
            "--stream-checkpoints",
            str(c.state_dir / "kinesis-checkpoints.json"),
            "--function-name-prefix",
            f"seat-booking-{c.name}",
            "--kinesis-poll-interval",
            str(c.kinesis_poll_interval),
        )
        wait_for(lambda: answers(f"{self.base_url}/health"), "the HTTP server", 60, self.server)
        # Every granian worker process builds the app on its first request: warm them all.
        for _ in range(4 * c.workers):
            answers(f"{self.base_url}/health")

    def pause_consumers(self) -> bool:
        """SIGSTOP the worker's processes (drain scenario): messages pile up as if every consumer were busy.
        The supervisor first, so it never sees a child stopped; resumed last."""
        pids = self.worker_pids()
        if not pids:
            return False
        self._paused = pids
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGSTOP)
        return True

    def resume_consumers(self) -> None:
        for pid in reversed(self._paused):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
        self._paused = []

    def alive(self) -> bool:
        return all(p is not None and p.poll() is None for p in (self.server, self.worker))

    def server_pids(self) -> list[int]:
        """granian's main process and its worker processes."""
        import psutil

        if self.server is None or self.server.poll() is not None:
            return []
        main = psutil.Process(self.server.pid)
        return [main.pid, *(child.pid for child in main.children(recursive=True))]

    def server_worker_pids(self) -> list[int]:
        import psutil

        if self.server is None or self.server.poll() is not None:
            return []
        return [child.pid for child in psutil.Process(self.server.pid).children(recursive=True)]

    def worker_pids(self) -> list[int]:
        """The worker (with --processes > 1 its supervisor) and the consumer processes it runs."""
        import psutil

        if self.worker is None or self.worker.poll() is not None:
            return []
        try:
            return [self.worker.pid, *(child.pid for child in psutil.Process(self.worker.pid).children())]
        except psutil.NoSuchProcess:
            return []

    def consumer_pids(self) -> list[int]:
        """The processes that run the pollers (the supervisor's children; else the worker itself)."""
        pids = self.worker_pids()
        return pids[1:] or pids

    def stop(self) -> None:
        # Everything has drained by now: the emulator stops alongside the server and the worker, not after.
        emulator = threading.Thread(target=self._stop_emulator)
        emulator.start()
        for process in (self.server, self.worker):
            if process is not None and process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in (self.server, self.worker):
            if process is not None:
                try:
                    process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
        emulator.join()
        for log in self._logs:
            log.close()
        if self.config.drop_database_at_exit:  # else both stay for inspection until the next run
            self.forget_redis_keys()
            self.drop_database()
        if self.redis_cluster is not None:  # the bench's own: gone with the run
            self.redis_cluster.stop()
