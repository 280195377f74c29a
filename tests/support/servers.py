"""Servers of the tests' own, on spare ports, so fault tests may stop, kill and restart them without
touching the machine's shared MariaDB and Redis."""

from __future__ import annotations

import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import redis

from tests.support.processes import free_port


class RedisServer:
    """A throwaway redis-server (no persistence: a restart starts empty, as the machine's Redis does).
    `extra_args` are more redis-server options (`--maxmemory-policy allkeys-lru`), kept across restarts."""

    def __init__(self, extra_args: Sequence[str] = ()) -> None:
        self.extra_args = tuple(extra_args)
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._dir = Path(tempfile.mkdtemp(prefix="test-redis-"))
        self._process: subprocess.Popen | None = None

    def start(self) -> RedisServer:
        self._process = subprocess.Popen(
            [
                shutil.which("redis-server") or "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self._dir),
                *self.extra_args,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis(port=self.port, socket_connect_timeout=0.2)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                return self
            except redis.ConnectionError:
                if time.monotonic() > deadline or self._process.poll() is not None:
                    raise RuntimeError(f"redis-server on port {self.port} did not start") from None
                time.sleep(0.05)

    def kill(self) -> None:
        """SIGKILL: the server vanishes mid-whatever, as in a crash."""
        if self._process and self._process.poll() is None:
            self._process.send_signal(signal.SIGKILL)
            self._process.wait(timeout=10)

    def pause(self) -> None:
        """SIGSTOP: the server hangs (accepts nothing, answers nothing), as a stuck node does."""
        if self._process:
            self._process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        if self._process:
            self._process.send_signal(signal.SIGCONT)

    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def stop(self) -> None:
        self.resume()
        self.kill()
        shutil.rmtree(self._dir, ignore_errors=True)


class MariaDBServer:
    """A throwaway MariaDB server (its own data directory and port; root without a password on loopback),
    so a test may stop it for a while, or kill it, and start it again on the same port with its data."""

    def __init__(self) -> None:
        self.port = free_port()
        self._dir = Path(tempfile.mkdtemp(prefix="test-mariadb-"))
        self._data = self._dir / "data"
        self._process: subprocess.Popen | None = None

    def url(self, database: str) -> str:
        return f"mysql://root@127.0.0.1:{self.port}/{database}"

    def start(self) -> MariaDBServer:
        if not self._data.exists():
            subprocess.run(
                [
                    shutil.which("mariadb-install-db") or "mariadb-install-db",
                    "--no-defaults",
                    f"--datadir={self._data}",
                    "--auth-root-authentication-method=normal",
                    "--skip-test-db",
                    f"--user={_user()}",
                ],
                check=True,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        self._process = subprocess.Popen(
            [
                shutil.which("mariadbd") or "/usr/sbin/mariadbd",
                "--no-defaults",
                f"--datadir={self._data}",
                f"--port={self.port}",
                "--bind-address=127.0.0.1",
                f"--socket={self._dir / 'mysqld.sock'}",
                f"--pid-file={self._dir / 'mysqld.pid'}",
                f"--user={_user()}",
                "--skip-log-bin",
                "--innodb-buffer-pool-size=64M",
            ],
            stdout=subprocess.DEVNULL,
            stderr=(self._dir / "server.log").open("ab"),
        )
        self._wait_until_up()
        return self

    def _wait_until_up(self) -> None:
        import pymysql

        deadline = time.monotonic() + 30
        while True:
            try:
                pymysql.connect(host="127.0.0.1", port=self.port, user="root", connect_timeout=1).close()
                return
            except pymysql.err.OperationalError:
                if time.monotonic() > deadline or (self._process and self._process.poll() is not None):
                    raise RuntimeError(f"mariadbd on port {self.port} did not start") from None
                time.sleep(0.1)

    def stop(self) -> None:
        """A clean shutdown (SIGTERM): the data stays for the next start."""
        if self._process and self._process.poll() is None:
            self._process.terminate()
            self._process.wait(timeout=30)

    def kill(self) -> None:
        if self._process and self._process.poll() is None:
            self._process.kill()
            self._process.wait(timeout=10)

    def pause(self) -> None:
        """SIGSTOP: the server hangs (connections stay open, nothing is answered), as a stuck node does."""
        if self.running():
            self._process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        if self.running():
            self._process.send_signal(signal.SIGCONT)

    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def remove(self) -> None:
        self.resume()
        self.kill()
        shutil.rmtree(self._dir, ignore_errors=True)


def _user() -> str:
    import getpass

    return getpass.getuser()
