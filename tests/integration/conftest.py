"""Fixtures shared by the integration tests that cut MySQL away from a container."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

import pytest

from tests.support.tcp_proxy import TcpProxy


@pytest.fixture()
def proxy(settings):
    """A TCP proxy in front of the run's MariaDB; `cut()` is the outage, `start()` the return."""
    target = urlsplit(settings.database_url)
    proxy = TcpProxy(target.hostname, target.port or 3306)
    proxy.start()
    yield proxy
    proxy.cut()


def url_through(proxy: TcpProxy, database_url: str) -> str:
    parts = urlsplit(database_url)
    return urlunsplit(parts._replace(netloc=f"{parts.username or 'root'}@127.0.0.1:{proxy.port}"))
