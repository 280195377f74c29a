"""Seed the demo event once (re-running finds it instead of creating another)."""

from __future__ import annotations

from chalicelib.bootstrap import Container
from chalicelib.domain.models import Event

DEMO_EVENT = {
    "name": "Les Misérables",
    "venue": "Blue Square",
    "performances": [{"starts_at": "2026-12-24T19:30:00+09:00", "strategy": "redis_async"}],
    "sections": [
        {"name": "VIP", "price": 170000, "rows": 2, "seats_per_row": 10},
        {"name": "R", "price": 120000, "rows": 5, "seats_per_row": 20},
    ],
}


def seed_demo_event(services: Container) -> Event:
    from chalicelib.adapters.mysql import CatalogueRepository

    existing = CatalogueRepository(services.db).find_event_id(DEMO_EVENT["name"], DEMO_EVENT["venue"])
    if existing is None:
        existing = services.catalogue.create_event(DEMO_EVENT)["event_id"]
    event = services.catalogue.get_event(existing)
    for performance in event.performances:
        services.seat_state.publish(performance)  # Redis may have been restarted since the last run
    return event
