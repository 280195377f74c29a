"""The local runtime reads a Chalice stage the way `chalice local` and Lambda do: the stage's
environment_variables become the process environment, but a variable already set explicitly wins (so tests
and people can point one run at another database without editing config.json)."""

from __future__ import annotations

import json
import os
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parents[2]


def stage_environment(stage: str, project_dir: Path = PROJECT_DIR) -> dict[str, str]:
    config = json.loads((project_dir / ".chalice" / "config.json").read_text())
    if stage not in config.get("stages", {}):
        raise SystemExit(f"no stage {stage!r} in .chalice/config.json")
    merged = dict(config.get("environment_variables", {}))
    merged.update(config["stages"][stage].get("environment_variables", {}))
    return merged


def apply_stage_environment(stage: str, project_dir: Path = PROJECT_DIR) -> None:
    for name, value in stage_environment(stage, project_dir).items():
        os.environ.setdefault(name, value)
    os.environ.setdefault("AWS_DEFAULT_REGION", os.environ.get("AWS_REGION", "us-east-1"))
    if os.environ.get("AWS_ENDPOINT_URL"):
        # Emulators accept any credentials, but boto3 insists on having some.
        os.environ.setdefault("AWS_ACCESS_KEY_ID", "local")
        os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "local")
