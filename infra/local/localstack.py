"""LocalStack in host mode: no Docker, a venv of its own on a Python >= 3.13, one process on loopback.

LocalStack's runtime (localstack-core 2026.3.0) needs Python >= 3.13 (on 3.11 its PEP 695 syntax does not
parse; on 3.12 its package installer fails on `threading.Lock | None`), while the service runs on 3.11, so it
gets a venv of its own, built from infra/local/localstack-requirements.txt on a Python 3.13+ found on this
machine (pyenv's versions, then python3.13 / python3.14 / python3 on PATH; LOCALSTACK_PYTHON picks one by
hand). The venv lives in the user's cache directory (~/.cache/seat-booking-localstack, LOCALSTACK_HOME
overrides), so it is built once per machine and shared by every clone (CI's fresh clone included); it is
updated when the pins change (rebuilt when the interpreter does), and then plux's entry-point cache is
cleared too (a stale one makes LocalStack load the plugins of the old set). Kinesis's engine (the npm package
kinesis-local) is installed next to it at the same time, from the npm registry, so no start waits for npm.

Each running LocalStack has a directory of its own (FILESYSTEM_ROOT: its temp files, its state, its log),
keeps its state in memory (a restart starts empty, like moto server) and is told it is not in a container
(OVERRIDE_IN_DOCKER=0: this machine looks like one to it). SQS and Kinesis work this way; DynamoDB (it
downloads DynamoDB Local at run time) and Lambda (Docker-only executor) do not, and the service needs
neither.

    python -m infra.local.localstack install      # the venv and Kinesis's engine; nothing when current
    python -m infra.local.localstack serve --port 4566 [--root DIR]   # until Ctrl-C / SIGTERM
    python -m infra.local.localstack which        # the Python 3.13+ it would use, or why there is none
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import fcntl
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

PINS_FILE = Path(__file__).with_name("localstack-requirements.txt")
SERVICES = ("sqs", "kinesis")
MIN_PYTHON = (3, 13)
# Tried in this order: the versions the pins were resolved and tested on first, newer ones after.
PREFERRED_MINORS = (13,)
STAMP_NAME = ".seat-booking-stamp"
# Environment variables passed on to LocalStack from ours; everything else (the service's own settings, AWS
# credentials) stays out, since LocalStack reads many variables of its own.
PASSED_ENV = re.compile(
    r"^(PATH|HOME|USER|LOGNAME|LANG|LC_\w+|TZ|TMPDIR|SSL_CERT_\w+|REQUESTS_CA_BUNDLE|CURL_CA_BUNDLE|NODE_EXTRA_CA_CERTS"
    r"|(?i:\w+_proxy)|(?i:npm_config_\w+))$"
)


class LocalStackUnavailable(RuntimeError):
    """LocalStack host mode cannot run on this machine (no Python 3.13+, no npm): the caller falls back."""


def say(message: str) -> None:
    print(f"[localstack] {message}", file=sys.stderr, flush=True)


# --- where things live --------------------------------------------------------------------------------------
def home_dir(env: Mapping[str, str] = os.environ) -> Path:
    if env.get("LOCALSTACK_HOME"):
        return Path(env["LOCALSTACK_HOME"]).expanduser()
    cache = env.get("XDG_CACHE_HOME")
    base = Path(cache) if cache and os.path.isabs(cache) else Path.home() / ".cache"
    return base / "seat-booking-localstack"


def venv_python(home: Path) -> Path:
    return home / "venv" / "bin" / "python"


# --- finding a Python 3.13+ ---------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Interpreter:
    path: str
    version: tuple[int, int, int]

    @property
    def version_text(self) -> str:
        return ".".join(map(str, self.version))


def _probe(executable: str) -> Interpreter | None:
    """The interpreter's version, if it runs and can make a venv with pip (a pyenv shim of a version that is
    not selected, or a Debian Python without python3-venv, cannot)."""
    try:
        out = subprocess.run(
            [
                executable,
                "-c",
                "import sys, venv, ensurepip; print(*sys.version_info[:3]); print(sys.executable)",
            ],
            capture_output=True,
            text=True,
            timeout=20,
            check=True,
        ).stdout.split("\n")
        version = tuple(int(part) for part in out[0].split())
        return Interpreter(os.path.realpath(out[1].strip() or executable), version)  # type: ignore[arg-type]
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return None


def _rank(interpreter: Interpreter) -> tuple:
    minor = interpreter.version[1]
    preferred = PREFERRED_MINORS.index(minor) if minor in PREFERRED_MINORS else len(PREFERRED_MINORS) + minor
    return (preferred, tuple(-part for part in interpreter.version))


def candidate_pythons(env: Mapping[str, str] = os.environ) -> list[str]:
    """Where a Python 3.13+ may be: LOCALSTACK_PYTHON, pyenv's versions, then python3.X on PATH."""
    found: list[str] = []
    if env.get("LOCALSTACK_PYTHON"):
        return [env["LOCALSTACK_PYTHON"]]
    pyenv_root = Path(env.get("PYENV_ROOT") or Path.home() / ".pyenv")
    for version_dir in sorted((pyenv_root / "versions").glob("3.*")):
        if re.fullmatch(r"3\.\d+\.\d+", version_dir.name) and (version_dir / "bin" / "python3").exists():
            found.append(str(version_dir / "bin" / "python3"))
    for name in ("python3.13", "python3.14", "python3.15", "python3"):
        path = shutil.which(name, path=env.get("PATH"))
        if path:
            found.append(path)
    return found


def find_python(env: Mapping[str, str] = os.environ) -> Interpreter | None:
    """The best Python >= 3.13 here for LocalStack's venv (3.13, then newer ones), or None."""
    seen: dict[str, Interpreter] = {}
    for candidate in candidate_pythons(env):
        interpreter = _probe(candidate)
        if interpreter and interpreter.version >= (*MIN_PYTHON, 0):
            seen.setdefault(interpreter.path, interpreter)
    return min(seen.values(), key=_rank) if seen else None


def unavailable_reason(env: Mapping[str, str] = os.environ) -> str | None:
    """Why LocalStack host mode cannot run here, or None if it can (the venv may still need installing)."""
    if venv_python(home_dir(env)).exists() and _stamp_matches(home_dir(env)):
        return None
    if find_python(env) is None:
        return (
            "no Python >= 3.13 on this machine (LocalStack 2026.3.0 runs on neither 3.11 nor 3.12); looked "
            "at LOCALSTACK_PYTHON, ~/.pyenv/versions and python3.13/python3.14/python3 on PATH"
        )
    if shutil.which("npm", path=env.get("PATH")) is None:
        return "no npm on PATH (LocalStack's Kinesis engine is an npm package)"
    return None


# --- the venv -----------------------------------------------------------------------------------------------
def _stamp(interpreter_version: str) -> str:
    digest = hashlib.sha256(PINS_FILE.read_bytes())
    digest.update(interpreter_version.encode())
    return digest.hexdigest()


def _venv_version(home: Path) -> str | None:
    with contextlib.suppress(OSError):
        for line in (home / "venv" / "pyvenv.cfg").read_text().splitlines():
            key, _, value = line.partition("=")
            if key.strip() in ("version", "version_info"):
                return value.strip()
    return None


def _stamp_matches(home: Path) -> bool:
    version = _venv_version(home)
    with contextlib.suppress(OSError):
        return version is not None and (home / "venv" / STAMP_NAME).read_text() == _stamp(version)
    return False


@contextlib.contextmanager
def _install_lock(home: Path, report: Callable[[str], None]) -> Iterator[None]:
    """One installer per machine at a time (make run and make test may both start first)."""
    home.mkdir(parents=True, exist_ok=True)
    with open(home / "install.lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            report("another process is installing LocalStack's venv; waiting for it")
            fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _run_logged(command: list[str], log: Path, env: Mapping[str, str] | None = None) -> None:
    with open(log, "a") as out:
        out.write(f"\n$ {' '.join(command)}\n")
        out.flush()
        result = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, env=env, check=False)
    if result.returncode != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-25:])
        raise RuntimeError(f"{' '.join(command[:4])} … failed (exit {result.returncode}); {log}:\n{tail}")


def _clear_plux_caches(home: Path) -> None:
    # plux keeps an index of the venv's entry points; after the pins change a stale one loads the old plugins.
    for cache in (home / "xdg-cache" / "plux", Path.home() / ".cache" / "plux"):
        shutil.rmtree(cache, ignore_errors=True)


def ensure_installed(report: Callable[[str], None] = say, env: Mapping[str, str] = os.environ) -> Path:
    """LocalStack's venv, current with the pins and with Kinesis's engine: its python. Installs on first use
    (about a minute here), updates when the pins change, and otherwise only checks a stamp."""
    home = home_dir(env)
    if venv_python(home).exists() and _stamp_matches(home):
        return venv_python(home)
    reason = unavailable_reason(env)
    if reason:
        raise LocalStackUnavailable(reason)
    interpreter = find_python(env)
    assert interpreter is not None
    with _install_lock(home, report):
        if venv_python(home).exists() and _stamp_matches(home):
            return venv_python(home)  # another process installed it while we waited
        started = time.monotonic()
        log = home / "install.log"
        log.write_text("")
        fresh = _venv_version(home) != interpreter.version_text
        report(
            f"{'creating' if fresh else 'updating'} LocalStack's venv {home / 'venv'} on Python "
            f"{interpreter.version_text} ({interpreter.path}) from {PINS_FILE.name}: once per machine and "
            f"pin change, one to two minutes; log: {log}"
        )
        (home / "venv" / STAMP_NAME).unlink(missing_ok=True)
        if fresh:
            shutil.rmtree(home / "venv", ignore_errors=True)
            _run_logged([interpreter.path, "-m", "venv", str(home / "venv")], log)
        python = str(venv_python(home))
        _run_logged(
            [python, "-m", "pip", "install", "-q", "--disable-pip-version-check", "-r", str(PINS_FILE)], log
        )
        _clear_plux_caches(home)
        report(f"installing Kinesis's engine (npm package kinesis-local) into {home / 'engines'}")
        setup_root = home / "setup-root"
        shutil.rmtree(setup_root, ignore_errors=True)
        _link_engines(home, setup_root)
        _run_logged(
            [python, "-m", "localstack.cli.lpm", "install", "kinesis-mock", "--target", "static_libs"],
            log,
            env=_localstack_env(home, setup_root, port=0),
        )
        shutil.rmtree(setup_root, ignore_errors=True)
        (home / "venv" / STAMP_NAME).write_text(_stamp(interpreter.version_text))
        report(f"LocalStack's venv is ready ({time.monotonic() - started:.0f} s)")
    return venv_python(home)


# --- running it ---------------------------------------------------------------------------------------------
def _link_engines(home: Path, root: Path) -> None:
    """Every LocalStack finds the engines installed once in the venv's home as its "static libs"."""
    static_libs = root / "usr" / "lib" / "localstack"
    static_libs.parent.mkdir(parents=True, exist_ok=True)
    (home / "engines").mkdir(parents=True, exist_ok=True)
    if static_libs.is_symlink() or static_libs.exists():
        if static_libs.is_symlink() and static_libs.resolve() == (home / "engines").resolve():
            return
        if static_libs.is_symlink():
            static_libs.unlink()
        else:
            shutil.rmtree(static_libs)
    static_libs.symlink_to(home / "engines", target_is_directory=True)


def _localstack_env(
    home: Path, root: Path, port: int, host: str = "127.0.0.1", services: tuple[str, ...] = SERVICES
) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if PASSED_ENV.match(name)}
    env.update(
        {
            "GATEWAY_LISTEN": f"{host}:{port}",
            # The host:port LocalStack writes into the URLs it returns, and path-style queue URLs: they need
            # no DNS (this machine has none for localhost.localstack.cloud).
            "LOCALSTACK_HOST": f"{host}:{port}",
            "SQS_ENDPOINT_STRATEGY": "path",
            "SERVICES": ",".join(services),
            # Services loaded at start, not by the first request.
            "EAGER_SERVICE_LOADING": "1",
            # This machine looks like a container to LocalStack; it is not one, and there is no Docker engine.
            "OVERRIDE_IN_DOCKER": "0",
            "FILESYSTEM_ROOT": str(root),
            # plux's entry-point cache (and anything else that uses the user's cache dir) goes to our home.
            "XDG_CACHE_HOME": str(home / "xdg-cache"),
            # State in memory: a restart starts empty, as with moto server; infra/provision.py recreates it.
            "PERSISTENCE": "0",
            "KINESIS_PERSISTENCE": "0",
            # Nothing to reach outside this machine: no DNS server of its own (it wants port 53), no TLS
            # certificate download, no usage analytics.
            "DNS_ADDRESS": "0",
            "SKIP_SSL_CERT_DOWNLOAD": "1",
            "DISABLE_EVENTS": "1",
        }
    )
    return env


def health(endpoint: str, timeout: float = 2.0) -> dict[str, str] | None:
    """The state of each service (LocalStack's /_localstack/health), or None if nothing answers like it."""
    try:
        with urllib.request.urlopen(f"{endpoint}/_localstack/health", timeout=timeout) as response:
            return dict(json.load(response).get("services", {}))
    except (OSError, ValueError, urllib.error.URLError):
        return None


def is_healthy(endpoint: str, services: tuple[str, ...] = SERVICES) -> bool:
    states = health(endpoint)
    return states is not None and all(states.get(name) in ("running", "available") for name in services)


class LocalStack:
    """One LocalStack host-mode process: `with LocalStack(port, root) as endpoint:` or start()/stop()."""

    def __init__(
        self,
        port: int,
        root: str | Path | None = None,
        host: str = "127.0.0.1",
        services: tuple[str, ...] = SERVICES,
        report: Callable[[str], None] = say,
    ) -> None:
        self.port = port
        self.host = host
        self.services = services
        self.root = Path(root or Path(tempfile.gettempdir()) / f"seat-booking-localstack-{port}")
        self.log_file = self.root / "localstack.log"
        self.endpoint = f"http://{host}:{port}"
        self._report = report
        self._process: subprocess.Popen | None = None

    def start(self, timeout: float = 90.0) -> str:
        python = ensure_installed(self._report)
        home = home_dir()
        self.root.mkdir(parents=True, exist_ok=True)
        _link_engines(home, self.root)
        started = time.monotonic()
        with open(self.log_file, "w") as log:
            self._process = subprocess.Popen(
                [str(python), "-m", "localstack.runtime.main"],
                cwd=self.root,
                env=_localstack_env(home, self.root, self.port, self.host, self.services),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                # Its own process group: a Ctrl-C in the terminal reaches whoever started it, who stops it
                # in order (after the server and worker), and stop() can end its engine processes with it.
                start_new_session=True,
            )
        deadline = started + timeout
        while not self._running():
            if self._process.poll() is not None:
                raise RuntimeError(f"LocalStack exited with {self._process.returncode}:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(
                    f"LocalStack did not become healthy within {timeout:.0f} s:\n{self.log_tail()}"
                )
            time.sleep(0.2)
        self.startup_seconds = time.monotonic() - started
        return self.endpoint

    def _running(self) -> bool:
        states = health(self.endpoint, timeout=1.0)
        return states is not None and all(states.get(name) == "running" for name in self.services)

    def log_tail(self, lines: int = 30) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        return "(no log)"

    def stop(self, timeout: float = 15.0) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)  # LocalStack shuts its services (and their engines) down
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)  # the group we created for it: its engines too
            process.wait()

    def __enter__(self) -> str:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


# --- command line -------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    install = commands.add_parser("install", help="create or update LocalStack's venv")
    install.add_argument(
        "--if-possible", action="store_true", help="on a machine without Python 3.13+, say so and exit 0"
    )
    serve = commands.add_parser("serve", help="run LocalStack until Ctrl-C or SIGTERM")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=4566)
    serve.add_argument("--root", help="its directory (default: <tmp>/seat-booking-localstack-<port>)")
    commands.add_parser("which", help="the Python 3.13+ LocalStack's venv would be built on")
    args = parser.parse_args(argv)

    if args.command == "which":
        interpreter = find_python()
        print(f"{interpreter.path} ({interpreter.version_text})" if interpreter else unavailable_reason())
        return 0 if interpreter else 1
    if args.command == "install":
        try:
            ensure_installed()
        except LocalStackUnavailable as exc:
            say(f"LocalStack host mode is not available here: {exc}")
            return 0 if args.if_possible else 1
        say(f"venv current: {venv_python(home_dir())}")
        return 0

    stopping = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stopping.set())
    localstack = LocalStack(args.port, args.root, host=args.host)
    try:
        localstack.start()
    except (LocalStackUnavailable, RuntimeError) as exc:
        say(str(exc))
        return 1
    say(
        f"LocalStack (host mode, {', '.join(SERVICES)}) at {localstack.endpoint}, up in "
        f"{localstack.startup_seconds:.1f} s; log: {localstack.log_file}"
    )
    try:
        while not stopping.wait(0.5):
            if localstack._process is None or localstack._process.poll() is not None:
                say(f"LocalStack exited:\n{localstack.log_tail()}")
                return 1
    finally:
        localstack.stop()
        say("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
