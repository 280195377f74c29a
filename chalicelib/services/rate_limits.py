"""Rate limits on booking writes (docs/api.md#rate-limits): a token bucket per user and one per client
address, shared across processes. A client over either gets 429 RATE_LIMITED with Retry-After.

The address bucket is far larger than the user's: many people share an address (a venue's Wi-Fi, a mobile
carrier's NAT), so it only stops a flood from one place; the user's bucket stops one person's script. Both
are taken from in one Redis call (the hot path pays one round trip).
"""

from __future__ import annotations

from dataclasses import dataclass

from chalicelib.domain.errors import RateLimited
from chalicelib.domain.rate_limits import Bucket
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

    def check(self, user_id: str, address: str | None) -> None:
        """A booking write of `user_id` from `address`: a token from each bucket, or 429 RATE_LIMITED naming
        the limit that refused (the address's is checked first)."""
        limits = []
        if address and self.per_address.requests > 0:
            limits.append(("address", Bucket(f"address:{address}", *_size(self.per_address))))
        if self.per_user.requests > 0:
            limits.append(("user", Bucket(f"user:{user_id}", *_size(self.per_user))))
        if not limits:
            return
        wait, refused = self._buckets.take([bucket for _, bucket in limits])
        if wait > 0:
            limit, bucket = limits[refused]
            raise RateLimited(
                f"too many booking requests from this {limit}: at most {bucket.capacity} per "
                f"{bucket.per_seconds:g} s; try again in {wait:g} s",
                retry_after=wait,
                limit=limit,
            )


def _size(rate: Rate) -> tuple[int, float]:
    return rate.requests, rate.per_seconds
