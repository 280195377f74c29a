"""GET /health: is every dependency answering?"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping

log = logging.getLogger(__name__)


def check_health(checks: Mapping[str, Callable[[], bool]]) -> tuple[bool, dict]:
    results = {}
    for name, check in checks.items():
        try:
            results[name] = "ok" if check() else "failing"
        except Exception as exc:
            log.warning("health check %s failed: %r", name, exc)
            results[name] = f"unavailable: {type(exc).__name__}"
    healthy = all(value == "ok" for value in results.values())
    return healthy, {"status": "ok" if healthy else "degraded", "checks": results}
