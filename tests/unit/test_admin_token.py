"""The admin token check runs before anything else, so it needs no database: Chalice's test client."""

from __future__ import annotations

import dataclasses
import json

import pytest
from chalice.test import Client

import app as app_module


@pytest.mark.parametrize("sent", [None, "", "test-admin-token"])
def test_an_unset_admin_token_locks_the_admin_api(monkeypatch, sent) -> None:
    monkeypatch.setattr(app_module, "settings", dataclasses.replace(app_module.settings, admin_token=""))
    headers = {"Content-Type": "application/json"}
    if sent is not None:
        headers["X-Admin-Token"] = sent
    with Client(app_module.app) as client:
        response = client.http.post("/admin/events", headers=headers, body=json.dumps({}))
    assert response.status_code == 401
    assert json.loads(response.body)["error"]["code"] == "UNAUTHORIZED"
