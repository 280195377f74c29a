"""Unit tests run with no server and no network (`unshare -n` passes): what needs a store runs on the
fakes of tests/support (fakes.py, offline.py)."""

from __future__ import annotations

import pytest

from tests.support.offline import Offline, offline


@pytest.fixture()
def system() -> Offline:
    """The application's object graph on fakes: real services and strategies, MySQL in memory, fakeredis."""
    return offline()
