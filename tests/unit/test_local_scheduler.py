"""The local scheduler's reading of schedule expressions and the event it hands a scheduled handler."""

from __future__ import annotations

from datetime import UTC, datetime

from chalice.app import Cron, Rate

from infra.local.scheduler import rate_seconds, scheduled_event


def test_rate_expressions_become_periods_and_cron_is_not_run() -> None:
    assert rate_seconds(Rate(5, unit=Rate.MINUTES)) == 300
    assert rate_seconds(Rate(1, unit=Rate.HOURS)) == 3600
    assert rate_seconds("rate(1 minute)") == 60
    assert rate_seconds("rate(2 days)") == 172_800
    assert rate_seconds(Cron(0, 10, "*", "*", "?", "*")) is None
    assert rate_seconds("cron(0 10 * * ? *)") is None


def test_the_event_is_eventbridges_scheduled_event() -> None:
    event = scheduled_event(
        "arn:aws:events:us-east-1:123456789012:rule/r",
        "us-east-1",
        "123456789012",
        datetime(2026, 12, 24, 19, 30, tzinfo=UTC),
    )
    assert event["detail-type"] == "Scheduled Event" and event["source"] == "aws.events"
    assert event["time"] == "2026-12-24T19:30:00Z" and event["resources"] == [
        "arn:aws:events:us-east-1:123456789012:rule/r"
    ]
    assert event["detail"] == {} and event["account"] == "123456789012" and event["region"] == "us-east-1"
