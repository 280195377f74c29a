"""Rate limits on booking writes (docs/api.md#rate-limits): a token bucket per user and one per client
address, shared across processes. A client over either gets 429 RATE_LIMITED with Retry-After.

The address bucket is far larger than the user's: many people share an address (a venue's Wi-Fi, a mobile
carrier's NAT), so it only stops a flood from one place; the user's bucket stops one person's script.
"""

from __future__ import annotations

from dataclasses import dataclass

from chalicelib.domain.errors import RateLimited
from chalicelib.services.ports import TokenBuckets


@dataclass(frozen=True)
class Rate:
    """At most `requests` per `per_seconds`, as a bucket of that many tokens refilled evenly (0: no limit)."""

    requests: int
    per_seconds: float


class BookingWriteLimits:
    def __init__(self, buckets: TokenBuckets, per_user: Rate, per_address: Rate) -> None:
        self._buckets = buckets
        self.per_user = per_user
        self.per_address = per_address

    def check_address(self, address: str | None) -> None:
        """Before anything else of a booking write (a flood costs one Redis call per request)."""
        if address:
            self._check(f"address:{address}", self.per_address, "address")

    def check_user(self, user_id: str) -> None:
        self._check(f"user:{user_id}", self.per_user, "user")

    def _check(self, bucket: str, rate: Rate, limit: str) -> None:
        if rate.requests <= 0:
            return
        wait = self._buckets.take(bucket, rate.requests, rate.per_seconds)
        if wait > 0:
            raise RateLimited(
                f"too many booking requests from this {limit}: at most {rate.requests} per "
                f"{rate.per_seconds:g} s; try again in {wait:g} s",
                retry_after=wait,
                limit=limit,
            )
