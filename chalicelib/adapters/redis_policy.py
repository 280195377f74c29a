"""Redis must never drop a key on its own. A seat hold evicted under memory pressure frees a seat someone is
paying for; an evicted idempotency record lets a retried request book a second time. Only `noeviction`
makes a full Redis refuse writes (an error the app answers) instead of silently forgetting data, so the
service refuses to start on any other `maxmemory-policy`.

The policy is read from `INFO memory` (field `maxmemory_policy`), not `CONFIG GET`: ElastiCache refuses
CONFIG commands; there the policy comes from the cluster's parameter group (infra/aws_template.py creates
one with `noeviction`).
"""

from __future__ import annotations

import redis
from redis.cluster import RedisCluster

REQUIRED_POLICY = "noeviction"


class RedisMisconfigured(RuntimeError):
    """Redis runs with a setting the booking guarantees do not survive: fix the server, not the request."""


def require_noeviction(client: redis.Redis) -> None:
    """Return if Redis' maxmemory-policy is noeviction; else raise RedisMisconfigured naming the policy found
    and the fix. A Redis whose INFO does not show the policy is refused too: it cannot be shown to be safe.
    Connection errors propagate as they are (Redis down is an outage, not a misconfiguration). A cluster:
    every primary must say so."""
    if isinstance(client, RedisCluster):
        replies = client.info("memory", target_nodes=RedisCluster.PRIMARIES)
        if "maxmemory_policy" in replies:  # one primary: its reply as it is
            replies = {"": replies}
        for reply in replies.values():
            _require(reply.get("maxmemory_policy"))
        return
    _require(client.info("memory").get("maxmemory_policy"))


def _require(policy: str | None) -> None:
    if policy == REQUIRED_POLICY:
        return
    found = "not reported by INFO memory" if policy is None else f"{policy!r}"
    raise RedisMisconfigured(
        f"Redis maxmemory-policy is {found}, must be {REQUIRED_POLICY!r}: any other policy may evict a seat "
        "hold or an idempotency record under memory pressure. Fix: `maxmemory-policy noeviction` in "
        "redis.conf (or `CONFIG SET maxmemory-policy noeviction`); on ElastiCache, a parameter group with "
        "maxmemory-policy=noeviction (the template's RedisParameterGroup)"
    )
