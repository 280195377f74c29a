"""Signed identities (docs/api.md#identity): who the caller is, and whom a waiting room has admitted.

Two kinds of JWT, both HS256 with TOKEN_SIGNING_KEY, told apart by `token_use` as Cognito's own tokens are:

- `access`: a user's identity, `sub` = the user. The local stage issues them (POST /dev/token) and the app
  verifies them. In AWS Cognito issues the users' tokens and API Gateway's Cognito authorizer verifies them
  before the function runs (IDENTITY_PROVIDER=cognito): the app then takes `sub` from the verified claims
  API Gateway hands it, and an `access` token of ours is worth nothing there.
- `admission`: a waiting room's admission to one performance (`aud`) for one user (`sub`) until `exp`
  (the AWS Virtual Waiting Room's shape). Issued and verified by the app in every stage.

PyJWT checks the signature, the algorithm, the issuer, the audience and that the claims are there; `exp` is
checked here against the injected clock (PyJWT would read the wall clock), so tests can move time.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

import jwt

from chalicelib.domain.errors import AdmissionRequired, ServiceUnavailable, Unauthorized

ALGORITHM = "HS256"
ISSUER = "seat-booking"
ACCESS, ADMISSION = "access", "admission"
BEARER = "bearer "
# A header longer than this is no token of ours (and is not worth decoding).
MAX_TOKEN_LENGTH = 4096


class Tokens:
    def __init__(
        self,
        signing_key: str,
        clock: Callable[[], float],
        user_token_seconds: float,
        admission_token_seconds: float,
    ) -> None:
        self._key = signing_key
        self.clock = clock
        self._user_token_seconds = user_token_seconds
        self._admission_token_seconds = admission_token_seconds

    # --- users' identities ------------------------------------------------------------------------------
    def user_token(self, user_id: str) -> dict[str, Any]:
        """POST /dev/token: a (valid) user id's access token -> {"token", "expires_at"}."""
        return self._sign(user_id, ACCESS, self._user_token_seconds)

    def user_of(self, authorization: str | None) -> str:
        """The user an `Authorization: Bearer <JWT>` header proves; 401 UNAUTHORIZED for anything else."""
        if not authorization or len(authorization) > MAX_TOKEN_LENGTH:
            raise Unauthorized("an 'Authorization: Bearer <token>' header is required")
        if authorization[: len(BEARER)].lower() != BEARER:
            raise Unauthorized("the Authorization header must be 'Bearer <token>'")
        claims = self._claims(authorization[len(BEARER) :].strip(), ACCESS)
        if claims is None:
            raise Unauthorized("the token is invalid or expired")
        return claims["sub"]

    # --- waiting rooms' admissions ------------------------------------------------------------------------
    def admission_token(
        self, user_id: str, performance_id: int, issued_at: float | None = None
    ) -> dict[str, Any]:
        """A waiting room's admission of `user_id` to `performance_id` -> {"token", "expires_at"}; signed as
        of `issued_at` (default now), so the same admission read twice is the same token."""
        return self._sign(
            user_id, ADMISSION, self._admission_token_seconds, audience=str(performance_id), now=issued_at
        )

    def check_admission(self, token: str | None, user_id: str, performance_id: int) -> None:
        """403 ADMISSION_REQUIRED unless `token` admits this user to this performance, now."""
        claims = None
        if token and len(token) <= MAX_TOKEN_LENGTH:
            claims = self._claims(token.strip(), ADMISSION, audience=str(performance_id))
        if claims is None or claims["sub"] != user_id:
            raise AdmissionRequired(
                f"performance {performance_id} has a waiting room: an X-Admission-Token it issued to this"
                " user is required",
                performance_id=performance_id,
            )

    # --- JWT ------------------------------------------------------------------------------------------------
    def _sign(
        self, subject: str, use: str, seconds: float, audience: str | None = None, now: float | None = None
    ) -> dict[str, Any]:
        if not self._key:
            raise ServiceUnavailable("this deployment has no TOKEN_SIGNING_KEY: it cannot issue tokens")
        now = self.clock() if now is None else now
        expires = math.floor(now + seconds)
        claims: dict[str, Any] = {
            "iss": ISSUER,
            "sub": subject,
            "token_use": use,
            "iat": int(now),
            "exp": expires,
        }
        if audience is not None:
            claims["aud"] = audience
        return {"token": jwt.encode(claims, self._key, algorithm=ALGORITHM), "expires_at": expires}

    def _claims(self, token: str, use: str, audience: str | None = None) -> Mapping[str, Any] | None:
        """The token's claims if it is ours, of this use (and audience), and not expired; else None.
        A token with an audience is refused where none is expected (PyJWT), so an admission token is
        never an identity."""
        if not self._key:
            return None  # a deployment without a key verifies nothing: every token is refused
        claims = _verified(self._key, token, use, audience)
        if claims is None or claims["exp"] <= self.clock():
            return None
        return claims


# A client sends the same token with every request: its signature is checked once per process. What a
# signature proves never changes for a given key and token; only `exp` is time's, checked at every use. Worth
# ~100 µs of a request that is refused from memory in ~100 µs (PyJWT's decode); bounded (~4 MB at most).
@functools.lru_cache(maxsize=16_384)
def _verified(key: str, token: str, use: str, audience: str | None) -> Mapping[str, Any] | None:
    try:
        claims = jwt.decode(
            token,
            key,
            algorithms=[ALGORITHM],
            issuer=ISSUER,
            audience=audience,
            # Time is the injected clock's, checked by the caller; PyJWT would read the wall clock.
            options={
                "require": ["sub", "exp", "iss", "token_use"],
                "verify_exp": False,
                "verify_iat": False,
            },
        )
    except jwt.PyJWTError:
        return None
    if claims["token_use"] != use or not isinstance(claims["sub"], str):
        return None
    if not isinstance(claims["exp"], int | float):
        return None
    return MappingProxyType(claims)  # shared between requests: read-only


def cognito_user(request_context: Mapping[str, Any]) -> str:
    """IDENTITY_PROVIDER=cognito: the user API Gateway's Cognito authorizer verified (its `sub` claim).
    API Gateway answers 401 itself to a request without a valid token, so a missing claim means the route
    was deployed without the authorizer: refused, never trusted."""
    claims = (request_context.get("authorizer") or {}).get("claims") or {}
    user = claims.get("sub")
    if not isinstance(user, str) or not user:
        raise Unauthorized("no verified identity: this route needs the Cognito authorizer")
    return user
