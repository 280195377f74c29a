"""require_noeviction against real redis-servers of the test's own (tests/support/servers.py), each started
with the policy under test: what INFO memory reports is the server's, not a mock's idea of it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from chalicelib.adapters.redis_policy import RedisMisconfigured, require_noeviction
from tests.support.servers import RedisServer


@pytest.fixture()
def redis_with_policy(request: pytest.FixtureRequest) -> Iterator[RedisServer]:
    server = RedisServer(["--maxmemory-policy", request.param]).start()
    yield server
    server.stop()


def _client(server: RedisServer, decode_responses: bool) -> redis.Redis:
    return redis.Redis.from_url(server.url, decode_responses=decode_responses, socket_timeout=2)


@pytest.mark.parametrize("redis_with_policy", ["noeviction"], indirect=True)
@pytest.mark.parametrize("decode_responses", [False, True])
def test_noeviction_passes(redis_with_policy: RedisServer, decode_responses: bool) -> None:
    client = _client(redis_with_policy, decode_responses)
    try:
        require_noeviction(client)
    finally:
        client.close()


@pytest.mark.parametrize("redis_with_policy", ["allkeys-lru", "volatile-lru"], indirect=True)
@pytest.mark.parametrize("decode_responses", [False, True])
def test_an_evicting_policy_is_refused_naming_it_and_the_fix(
    redis_with_policy: RedisServer, decode_responses: bool
) -> None:
    policy = redis_with_policy.extra_args[-1]
    client = _client(redis_with_policy, decode_responses)
    try:
        with pytest.raises(RedisMisconfigured, match=f"maxmemory-policy is '{policy}'") as raised:
            require_noeviction(client)
    finally:
        client.close()
    assert "maxmemory-policy noeviction" in str(raised.value)
    assert isinstance(raised.value, RuntimeError)


def test_a_policy_changed_at_runtime_is_seen() -> None:
    """INFO reflects the running server (a CONFIG SET after start), not only its command line."""
    server = RedisServer().start()
    client = _client(server, decode_responses=True)
    try:
        require_noeviction(client)  # redis-server's own default
        client.config_set("maxmemory-policy", "allkeys-lfu")
        with pytest.raises(RedisMisconfigured, match="allkeys-lfu"):
            require_noeviction(client)
    finally:
        client.close()
        server.stop()
