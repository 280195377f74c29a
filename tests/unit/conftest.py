"""Unit tests run with no server and no network (`unshare -n` passes): what needs a store runs on the
fakes of tests/support (fakes.py, offline.py)."""

from __future__ import annotations

import types

import pytest
from chalice.config import Config
from chalice.local import LocalGateway

import app as app_module
from infra.local.wsgi import per_thread_request_state
from tests.support.offline import Offline, offline


@pytest.fixture()
def system() -> Offline:
    """The application's object graph on fakes: real services and strategies, MySQL in memory, fakeredis."""
    return offline()


@pytest.fixture()
def gateway(system: Offline, monkeypatch: pytest.MonkeyPatch) -> LocalGateway:
    """The app as `make run` serves it (Chalice's LocalGateway, per-thread request state) on `system`'s
    seat-map services; requests go through tests/support/wsgi_gets.py."""
    services = types.SimpleNamespace(catalogue=system.catalogue, seat_state=system.seat_state)
    monkeypatch.setattr(app_module, "container", lambda: services)
    return LocalGateway(per_thread_request_state(app_module.app), Config())
