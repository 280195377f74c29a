"""The admin token check runs before anything else, so it needs no database: Chalice's test client. Which
token a stage gets: only the local stage may fall back to the public one, any other stays locked."""

from __future__ import annotations

import json

import pytest
from chalice.test import Client

import app as app_module
from chalicelib.config import LOCAL_ADMIN_TOKEN, Settings


@pytest.mark.parametrize("sent", [None, "", "test-admin-token"])
def test_an_unset_admin_token_locks_the_admin_api(monkeypatch, sent) -> None:
    monkeypatch.setattr(app_module, "settings", app_module.settings.replace(admin_token=""))
    headers = {"Content-Type": "application/json"}
    if sent is not None:
        headers["X-Admin-Token"] = sent
    with Client(app_module.app) as client:
        response = client.http.post("/admin/events", headers=headers, body=json.dumps({}))
    assert response.status_code == 401
    assert json.loads(response.body)["error"]["code"] == "UNAUTHORIZED"


@pytest.mark.parametrize("stage", ["test", "prod", "localstack"])
@pytest.mark.parametrize("token", [None, ""])
def test_a_deployed_stage_without_a_token_gets_none(stage: str, token: str | None) -> None:
    env = {"STAGE": stage} if token is None else {"STAGE": stage, "ADMIN_TOKEN": token}
    assert Settings.from_env(env).admin_token == ""


@pytest.mark.parametrize("env", [{}, {"STAGE": "local"}, {"STAGE": "local", "ADMIN_TOKEN": ""}])
def test_only_the_local_stage_falls_back_to_the_public_token(env: dict[str, str]) -> None:
    assert Settings.from_env(env).admin_token == LOCAL_ADMIN_TOKEN == "local-admin-token"


@pytest.mark.parametrize("stage", ["local", "test", "prod", "localstack"])
def test_an_explicit_token_wins_in_every_stage(stage: str) -> None:
    assert Settings.from_env({"STAGE": stage, "ADMIN_TOKEN": "s3cret"}).admin_token == "s3cret"


def test_settings_built_in_code_are_locked() -> None:
    """Code that builds Settings() directly (not from the environment) gets no usable token either."""
    assert Settings().admin_token == ""


def test_an_empty_stage_is_not_the_local_stage() -> None:
    """An empty STAGE is kept as given (not the default), so it cannot fall back to the public token."""
    settings = Settings.from_env({"STAGE": ""})
    assert (settings.stage, settings.admin_token) == ("", "")
