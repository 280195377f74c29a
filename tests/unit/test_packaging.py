"""Chalice packages requirements.txt into the Lambda; pyproject.toml is where dependencies are declared."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_requirements_txt_mirrors_the_runtime_dependencies() -> None:
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    packaged = [line.strip() for line in (ROOT / "requirements.txt").read_text().splitlines() if line.strip()]
    assert sorted(packaged) == sorted(declared)
    assert all("==" in requirement for requirement in declared + packaged), "dependencies must be pinned"


def test_every_dev_dependency_is_pinned() -> None:
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert all("==" in requirement for group in extras.values() for requirement in group)


def test_chalice_stages_differ_only_in_environment() -> None:
    config = json.loads((ROOT / ".chalice" / "config.json").read_text())
    stages = config["stages"]
    assert {"local", "localstack", "prod"} <= set(stages)
    keys = {name: set(stage.get("environment_variables", {})) for name, stage in stages.items()}
    assert keys["local"] == keys["localstack"] == keys["prod"], "every stage must set the same variables"
