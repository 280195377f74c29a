"""The simulated users' sign-in. Every booking route wants `Authorization: Bearer <JWT>` and takes the user
from the token (docs/api.md#identity); the bench's stack issues tokens at `POST /dev/token` (stack.py turns
DEV_TOKENS on, with a signing key of its own).

A run's users are signed in up front, all of them, before its generator processes are started: a sign-in
is never inside a latency, a throughput or a CPU meter's window, and a generator only looks tokens up. At
64 at a time the 2-core machine signs in ~2,700 users a second (16 at a time: ~1,200), so a full burst's
10,000 distinct users cost ~4 s before it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

import aiohttp

SIGN_IN_PATH = "/dev/token"
SIGN_IN_CONCURRENCY = 64


class SignInFailed(RuntimeError):
    """POST /dev/token did not give a token: the bench cannot act as its users."""


def bearer(token: str) -> dict[str, str]:
    """The header a request made as the token's user carries."""
    return {"Authorization": f"Bearer {token}"}


def sign_in(
    base_url: str, users: Iterable[str], concurrency: int = SIGN_IN_CONCURRENCY, timeout: float = 60.0
) -> dict[str, str]:
    """Every distinct user's token -> {user: token}, signed in `concurrency` at a time (blocking: the
    orchestrator's code is synchronous)."""
    distinct = list(dict.fromkeys(users))
    if not distinct:
        return {}
    tokens = asyncio.run(_sign_in_all(base_url, distinct, concurrency, timeout))
    return dict(zip(distinct, tokens, strict=True))


def sign_in_one(base_url: str, user: str, timeout: float = 60.0) -> str:
    return sign_in(base_url, [user], 1, timeout)[user]


async def _sign_in_all(base_url: str, users: list[str], concurrency: int, timeout: float) -> list[str]:
    slots = asyncio.Semaphore(concurrency)
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(
        base_url, connector=connector, timeout=aiohttp.ClientTimeout(total=timeout)
    ) as session:

        async def one(user: str) -> str:
            async with slots:
                return await _token(session, user)

        return await asyncio.gather(*(one(user) for user in users))


async def _token(session: aiohttp.ClientSession, user: str) -> str:
    async with session.post(SIGN_IN_PATH, json={"user_id": user}) as response:
        if response.status != 201:
            answer = (await response.text())[:300]
            hint = " (is DEV_TOKENS on in the bench's stack?)" if response.status == 404 else ""
            raise SignInFailed(f"POST {SIGN_IN_PATH} for {user!r} answered {response.status}{hint}: {answer}")
        return (await response.json())["token"]
