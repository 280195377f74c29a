"""A token bucket as the rate limits name it (chalicelib/services/rate_limits.py): `capacity` tokens,
refilled evenly over `per_seconds`."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Bucket:
    name: str
    capacity: int
    per_seconds: float
