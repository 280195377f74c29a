"""localstack-compose.yml: its structure everywhere (PyYAML), and Docker Compose's own reading of it where a
Compose client exists (this machine kind has a docker client binary without the compose plugin)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "localstack-compose.yml"
PINNED = re.compile(r"^[\w./-]+:\d+\.\d+\.\d+[\w.-]*$")  # name:MAJOR.MINOR.PATCH[-variant]
LONG_RUNNING = ("localstack", "mysql", "redis")


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text())


def _host_path(volume: str) -> tuple[Path, str]:
    source, target = volume.split(":")[:2]
    return (ROOT / source).resolve(), target


def test_services_are_pinned_healthy_and_on_loopback(compose: dict) -> None:
    services = compose["services"]
    assert set(services) == {*LONG_RUNNING, "deploy"}
    for name, service in services.items():
        assert PINNED.match(service["image"]), (
            f"{name}: pin the image to a full version, not {service['image']}"
        )
        for port in service.get("ports", []):
            assert port.startswith("127.0.0.1:"), f"{name}: publish on loopback only, not {port}"
    for name in LONG_RUNNING:
        test = services[name]["healthcheck"]["test"]
        assert test[0] == "CMD" and len(test) > 1, name
    assert services["mysql"]["image"].startswith("mysql:8.")
    assert services["redis"]["image"].startswith("redis:7.")
    assert {name: dep["condition"] for name, dep in services["deploy"]["depends_on"].items()} == {
        name: "service_healthy" for name in LONG_RUNNING
    }


def test_localstack_provisions_through_infra_and_runs_lambdas_on_the_compose_network(compose: dict) -> None:
    localstack = compose["services"]["localstack"]
    mounts = dict(_host_path(volume) for volume in localstack["volumes"] if volume.startswith("."))
    init_dir = next(source for source, target in mounts.items() if target == "/etc/localstack/init/ready.d")
    scripts = sorted(init_dir.glob("*.sh"))
    assert scripts, f"no init script in {init_dir}"
    for script in scripts:
        assert os.access(script, os.X_OK), f"{script} must be executable (LocalStack runs it directly)"
        assert script.read_text().startswith("#!"), f"{script} needs a shebang"
    assert "infra.provision" in scripts[0].read_text()
    assert mounts[ROOT] == "/opt/seat-booking", "the hook runs the project's own provisioning code"
    services = set(localstack["environment"]["SERVICES"].split(","))
    assert {"sqs", "kinesis", "lambda", "cloudformation", "iam", "s3"} <= services
    assert localstack["environment"]["LAMBDA_DOCKER_NETWORK"] == compose["networks"]["default"]["name"]
    assert "/var/run/docker.sock:/var/run/docker.sock" in localstack["volumes"]


def test_deploy_runs_the_documented_script(compose: dict) -> None:
    deploy = compose["services"]["deploy"]
    script = ROOT / deploy["command"][-1]
    assert script.is_file()
    text = script.read_text()
    for step in ("infra.migrate", "chalice package --stage localstack", "infra.sam", "cloudformation deploy"):
        assert step in text, step
    assert deploy["environment"]["AWS_ENDPOINT_URL"] == "http://localstack:4566"


def _compose_command() -> list[str] | None:
    if shutil.which("docker"):
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True, text=True)
        if probe.returncode == 0:
            return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    return None


def test_docker_compose_accepts_the_file() -> None:
    command = _compose_command()
    if command is None:
        pytest.skip(
            "no Docker Compose client here (docker without the compose plugin, no docker-compose): "
            "localstack-compose.yml was checked structurally only"
        )
    result = subprocess.run(
        [*command, "-f", str(COMPOSE_FILE), "config", "--quiet"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
