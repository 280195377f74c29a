"""LocalStack host mode's decisions (infra/local/localstack.py), without starting anything: which Python its
venv is built on, when the venv is current, what LocalStack is told; and where the app's clients point
(chalicelib/adapters/aws.py) and which emulator `make run` picks (infra/local/run.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from chalicelib.adapters import aws
from chalicelib.config import Settings
from infra.local import localstack, run


def _fake_python(path: Path, version: str, works: bool = True) -> Path:
    """An executable that answers the probe as a Python of `version` would (or fails, like a pyenv shim of a
    version that is not selected)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    body = f'echo "{version.replace(".", " ")}"; echo "{path}"' if works else "exit 127"
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)
    return path


def _machine(tmp_path: Path, pyenv: dict[str, bool], on_path: dict[str, str]) -> dict[str, str]:
    for version, works in pyenv.items():
        _fake_python(tmp_path / "pyenv" / "versions" / version / "bin" / "python3", version, works)
    for name, version in on_path.items():
        _fake_python(tmp_path / "bin" / name, version)
    (tmp_path / "bin").mkdir(exist_ok=True)
    return {
        "PYENV_ROOT": str(tmp_path / "pyenv"),
        "PATH": str(tmp_path / "bin"),
        "LOCALSTACK_HOME": str(tmp_path / "home"),
    }


def test_the_venv_is_built_on_3_13_first_and_never_on_a_python_that_does_not_run(tmp_path: Path) -> None:
    env = _machine(
        tmp_path,
        pyenv={"3.11.7": True, "3.12.1": True, "3.13.0": True, "3.13.5": False, "3.14.0": True},
        on_path={"python3": "3.11.9"},
    )
    found = localstack.find_python(env)
    assert found is not None and found.version == (3, 13, 0)

    env = _machine(tmp_path / "b", pyenv={"3.11.7": True, "3.14.0": True}, on_path={"python3.13": "3.13.4"})
    found = localstack.find_python(env)
    assert found is not None and found.version == (3, 13, 4), "3.13 before newer, untested versions"
    env = _machine(tmp_path / "c", pyenv={"3.12.1": True}, on_path={"python3.14": "3.14.1"})
    found = localstack.find_python(env)
    assert found is not None and found.version == (3, 14, 1), "3.12 is too old (LocalStack fails on it)"


def test_without_python_3_13_host_mode_is_unavailable_and_says_why(tmp_path: Path) -> None:
    env = _machine(tmp_path, pyenv={"3.12.1": True, "3.13.0": False}, on_path={"python3": "3.11.9"})
    assert localstack.find_python(env) is None
    reason = localstack.unavailable_reason(env)
    assert reason is not None and "Python >= 3.13" in reason
    with pytest.raises(localstack.LocalStackUnavailable):
        localstack.ensure_installed(report=lambda _: None, env=env)


def test_the_venv_is_current_only_for_the_pins_and_interpreter_it_was_built_from(
    tmp_path: Path, monkeypatch
) -> None:
    pins = tmp_path / "pins.txt"
    pins.write_text("localstack-core[runtime]==2026.3.0\n")
    monkeypatch.setattr(localstack, "PINS_FILE", pins)
    venv = tmp_path / "venv"
    venv.mkdir()
    (venv / "pyvenv.cfg").write_text("home = /x\nversion = 3.13.0\n")
    (venv / localstack.STAMP_NAME).write_text(localstack._stamp("3.13.0"))
    assert localstack._stamp_matches(tmp_path)
    pins.write_text("localstack-core[runtime]==2026.3.0\ncbor2==5.6.5\n")
    assert not localstack._stamp_matches(tmp_path), "a changed pin makes the venv stale"
    (venv / localstack.STAMP_NAME).write_text(localstack._stamp("3.13.0"))
    (venv / "pyvenv.cfg").write_text("home = /x\nversion = 3.12.1\n")
    assert not localstack._stamp_matches(tmp_path), "so does another interpreter"


def test_localstack_is_told_where_to_listen_and_live_and_nothing_of_ours(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "mysql://root:secret@db/booking")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-for-localstack")
    monkeypatch.setenv("SERVICES", "everything")
    env = localstack._localstack_env(tmp_path / "home", tmp_path / "root", port=4599)
    assert env["GATEWAY_LISTEN"] == "127.0.0.1:4599"
    assert env["SERVICES"] == "sqs,kinesis"
    assert env["OVERRIDE_IN_DOCKER"] == "0"
    assert env["FILESYSTEM_ROOT"] == str(tmp_path / "root")
    assert env["XDG_CACHE_HOME"] == str(tmp_path / "home" / "xdg-cache"), "plux's cache is ours"
    assert "DATABASE_URL" not in env and "AWS_SECRET_ACCESS_KEY" not in env
    assert "PATH" in env


def test_every_localstack_finds_the_engines_installed_once(tmp_path: Path) -> None:
    home, root = tmp_path / "home", tmp_path / "root"
    (home / "engines" / "kinesis-local").mkdir(parents=True)
    localstack._link_engines(home, root)
    localstack._link_engines(home, root)  # idempotent
    assert (root / "usr" / "lib" / "localstack" / "kinesis-local").is_dir()


def test_clients_use_the_configured_endpoint_and_in_the_localstack_stage_localstack_client_finds_one(
    settings: Settings, monkeypatch
) -> None:
    configured = settings.replace(aws_endpoint_url="http://127.0.0.1:5999")
    for stage in ("local", "localstack", "prod"):
        assert aws.endpoint_url("sqs", configured.replace(stage=stage)) == "http://127.0.0.1:5999"
    assert aws.endpoint_url("sqs", settings.replace(aws_endpoint_url=None, stage="prod")) is None

    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.setenv("LOCALSTACK_HOST", "127.0.0.1:4777")
    unconfigured = settings.replace(aws_endpoint_url=None, stage="localstack")
    assert aws.endpoint_url("kinesis", unconfigured) == "http://127.0.0.1:4777"
    assert aws.client("sqs", unconfigured).meta.endpoint_url == "http://127.0.0.1:4777"


def test_make_run_picks_localstack_where_it_can_run_and_moto_elsewhere(monkeypatch) -> None:
    monkeypatch.setattr(localstack, "unavailable_reason", lambda: None)
    assert run.choose_emulator("auto")[0] == "localstack"
    monkeypatch.setattr(localstack, "unavailable_reason", lambda: "no Python >= 3.13 on this machine")
    emulator, why = run.choose_emulator("auto")
    assert emulator == "moto" and "no Python >= 3.13" in why
    assert run.choose_emulator("localstack")[0] == "localstack"
    assert run.choose_emulator("moto")[0] == "moto"
