"""A local stand-in for EventBridge schedules: every `@app.schedule` handler of the app is invoked at its rate
with the event and the context a scheduled Lambda gets (`chalice local` fires no schedules either).

As on AWS, the first invocation comes one period after the start. Unlike EventBridge, which would start a
second instance, a run that outlasts its period delays the next tick: one run at a time per handler. Only
`rate(...)` expressions are supported; a `cron(...)` schedule is logged and skipped.
"""

from __future__ import annotations

import logging
import re
import threading
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from types import ModuleType
from typing import Any

from chalice.app import Rate, ScheduledEventConfig

from infra.local.sqs_poller import DEFAULT_MEMORY_MB, Instance, LambdaContext

log = logging.getLogger(__name__)

ACCOUNT_ID = "123456789012"  # the emulator's account
DEFAULT_TIMEOUT_SECONDS = 60
UNIT_SECONDS = {"MINUTE": 60, "HOUR": 3600, "DAY": 86400}
RATE_EXPRESSION = re.compile(r"rate\(\s*(\d+)\s+(minute|hour|day)s?\s*\)", re.IGNORECASE)


def rate_seconds(expression: Any) -> float | None:
    """The period of a `Rate(...)` or a "rate(5 minutes)" string; None for anything else (cron)."""
    if isinstance(expression, Rate):
        return expression.value * UNIT_SECONDS[expression.unit.upper().rstrip("S")]
    match = RATE_EXPRESSION.fullmatch(str(expression).strip())
    return int(match[1]) * UNIT_SECONDS[match[2].upper()] if match else None


def scheduled_event(rule_arn: str, region: str, account: str, when: datetime) -> dict[str, Any]:
    """The event EventBridge hands a scheduled Lambda."""
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": account,
        "time": when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": region,
        "resources": [rule_arn],
        "detail": {},
    }


class ScheduledFunction:
    """One `@app.schedule` handler, invoked every `period_seconds` on a daemon thread of its own."""

    def __init__(
        self,
        handler: Callable[[dict, Any], Any],
        *,
        function_name: str,
        period_seconds: float,
        region: str,
        account: str = ACCOUNT_ID,
        timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
        memory_limit_in_mb: int = DEFAULT_MEMORY_MB,
    ) -> None:
        if period_seconds <= 0:
            raise ValueError("period_seconds must be positive")
        self._handler = handler
        self.function_name = function_name
        self.period_seconds = period_seconds
        self.region = region
        self.account = account
        self.timeout_seconds = timeout_seconds
        self.memory_limit_in_mb = memory_limit_in_mb
        self.rule_arn = f"arn:aws:events:{region}:{account}:rule/{function_name}"
        self.invocations = 0
        self.failures = 0
        self.last_result: Any = None
        self._instance = Instance(function_name)
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def invoke(self) -> Any:
        """One invocation now, as EventBridge makes it; the handler's exception propagates."""
        context = LambdaContext(
            function_name=self.function_name,
            invoked_function_arn=f"arn:aws:lambda:{self.region}:{self.account}:function:{self.function_name}",
            memory_limit_in_mb=self.memory_limit_in_mb,
            log_group_name=f"/aws/lambda/{self.function_name}",
            log_stream_name=self._instance.log_stream_name,
            timeout_seconds=self.timeout_seconds,
        )
        event = scheduled_event(self.rule_arn, self.region, self.account, datetime.now(UTC))
        try:
            result = self._handler(event, context)
        except Exception:
            self.failures += 1
            raise
        finally:
            self.invocations += 1
        self.last_result = result
        return result

    def start(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            raise RuntimeError(f"the schedule of {self.function_name} is already running")
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run, name=f"schedule-{self.function_name}", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> bool:
        """No further ticks; a run in progress finishes. True if the thread ended within `timeout`."""
        self._stopping.set()
        if self._thread is None:
            return True
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def _run(self) -> None:
        while not self._stopping.wait(self.period_seconds):
            try:
                self.invoke()
            except Exception:
                # EventBridge would retry the asynchronous invocation; the next tick is soon enough here.
                log.exception("scheduled %s failed", self.function_name)


def schedules_for_app(
    app_module: ModuleType,
    *,
    function_name_prefix: str,
    region: str,
    speedup: float = 1.0,
    **kwargs: Any,
) -> list[ScheduledFunction]:
    """One ScheduledFunction per `@app.schedule` of `app_module.app`, named `<prefix>-<handler name>` as
    Chalice names the deployed function. `speedup` divides every period (demos and tests)."""
    schedules = []
    for config in app_module.app.event_sources:
        if not isinstance(config, ScheduledEventConfig):
            continue
        period = rate_seconds(config.schedule_expression)
        if period is None:
            log.warning("%s: only rate() schedules run locally, skipped", config.name)
            continue
        attribute = config.handler_string.rsplit(".", 1)[-1]
        handler = getattr(app_module, attribute, None)
        if not callable(handler):
            raise ValueError(f"{app_module.__name__} has no handler {attribute!r}")
        schedules.append(
            ScheduledFunction(
                handler,
                function_name=f"{function_name_prefix}-{config.name}",
                period_seconds=period / speedup,
                region=region,
                **kwargs,
            )
        )
    return schedules
