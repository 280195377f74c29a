"""Request bodies the tests build over and over."""

from __future__ import annotations

import uuid


def event_body(
    strategy: str = "redis_async", rows: int = 2, seats_per_row: int = 5, sections: int = 1
) -> dict:
    return {
        "name": f"Test show {uuid.uuid4().hex[:8]}",
        "venue": "Blue Square",
        "performances": [{"starts_at": "2026-12-24T19:30:00+09:00", "strategy": strategy}],
        "sections": [
            {"name": f"S{i}", "price": 50_000 + i, "rows": rows, "seats_per_row": seats_per_row}
            for i in range(sections)
        ],
    }
