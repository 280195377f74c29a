"""Chalice packages requirements.txt into the Lambda; pyproject.toml is where dependencies are declared."""

from __future__ import annotations

import json
import re
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


# What may differ between stages: endpoints, sizes (timeouts, directories) and secrets. Everything else (queue
# names, redrive, strategy, key prefix) is the same code path in every stage.
STAGE_SPECIFIC = {
    "STAGE",
    "DATABASE_URL",  # endpoint + secret
    "REDIS_URL",
    "AWS_ENDPOINT_URL",
    "ADMIN_TOKEN",
    "LEDGER_DIR",
    "QUEUE_VISIBILITY_TIMEOUT_SECONDS",
    "PENDING_HOLD_DEADLINE_SECONDS",
    "METRICS_FLUSH_SECONDS",  # 0 where the app runs as Lambdas; the local processes batch their metrics
    # Identity: the local stages sign their own users in (a public key); AWS has Cognito and a secret key.
    "IDENTITY_PROVIDER",
    "TOKEN_SIGNING_KEY",
    "DEV_TOKENS",
}


def test_chalice_stages_differ_only_in_endpoints_sizes_and_secrets() -> None:
    from chalicelib.config import Settings

    config = json.loads((ROOT / ".chalice" / "config.json").read_text())
    stages = {name: stage.get("environment_variables", {}) for name, stage in config["stages"].items()}
    assert {"local", "localstack", "prod"} <= set(stages)
    keys = {name: set(env) for name, env in stages.items()}
    assert keys["local"] == keys["localstack"] == keys["prod"], "every stage must set the same variables"
    for name in keys["prod"] - STAGE_SPECIFIC:
        assert len({env[name] for env in stages.values()}) == 1, f"{name} differs between stages"
    read = set(Settings.env_names())
    assert keys["prod"] <= read, f"not read by chalicelib/config.py: {keys['prod'] - read}"
    for name, env in stages.items():
        assert Settings.from_env(env).stage == name


def test_prod_stage_holds_references_to_secrets_not_secrets() -> None:
    prod = json.loads((ROOT / ".chalice" / "config.json").read_text())["stages"]["prod"][
        "environment_variables"
    ]
    reference = re.compile(r"\{\{resolve:secretsmanager:[^{}]+\}\}")
    assert reference.fullmatch(prod["ADMIN_TOKEN"])
    assert reference.fullmatch(prod["TOKEN_SIGNING_KEY"])
    userinfo = prod["DATABASE_URL"].split("://", 1)[1].split("@", 1)[0]
    assert reference.fullmatch(userinfo.split(":", 1)[1]), "the MySQL password comes from Secrets Manager"
    assert prod["AWS_ENDPOINT_URL"] == ""
