"""Signed identities and admissions (chalicelib/adapters/tokens.py): what a token proves, and to whom."""

from __future__ import annotations

import base64
import json

import jwt
import pytest

from chalicelib.adapters.tokens import Tokens, cognito_user
from chalicelib.domain.errors import AdmissionRequired, ServiceUnavailable, Unauthorized
from tests.support.clock import FakeClock

KEY = "unit-test-signing-key-" + "0123456789abcdef" * 3  # 64 bytes: enough for HS512 too


@pytest.fixture()
def clock() -> FakeClock:
    return FakeClock(1_800_000_000.0)


@pytest.fixture()
def tokens(clock: FakeClock) -> Tokens:
    return Tokens(KEY, clock, user_token_seconds=3600, admission_token_seconds=900)


def bearer(token: str) -> str:
    return f"Bearer {token}"


def test_a_user_token_proves_its_user_until_it_expires(tokens: Tokens, clock: FakeClock) -> None:
    issued = tokens.user_token("ann")
    assert issued["expires_at"] == 1_800_003_600
    assert tokens.user_of(bearer(issued["token"])) == "ann"
    assert tokens.user_of(f"bearer  {issued['token']}") == "ann"  # the scheme is case-insensitive
    clock.advance(3599)
    assert tokens.user_of(bearer(issued["token"])) == "ann"
    clock.advance(1)
    with pytest.raises(Unauthorized, match="invalid or expired"):
        tokens.user_of(bearer(issued["token"]))


@pytest.mark.parametrize(
    "header",
    [None, "", "ann", "Basic YW5uOnB3", "Bearer ", "Bearer x.y.z", "Bearer " + "a" * 5000],
    ids=["none", "empty", "no-scheme", "basic", "no-token", "garbage", "too-long"],
)
def test_anything_but_a_bearer_token_of_ours_is_401(tokens: Tokens, header: str | None) -> None:
    with pytest.raises(Unauthorized):
        tokens.user_of(header)


def _claims(**changes: object) -> dict:
    return {"iss": "seat-booking", "sub": "ann", "token_use": "access", "exp": 1_900_000_000, **changes}


@pytest.mark.parametrize(
    "token",
    [
        jwt.encode(_claims(), "another-key-0123456789abcdef0123456789", algorithm="HS256"),
        jwt.encode(_claims(iss="someone-else"), KEY, algorithm="HS256"),
        jwt.encode(_claims(token_use="id"), KEY, algorithm="HS256"),
        jwt.encode({k: v for k, v in _claims().items() if k != "exp"}, KEY, algorithm="HS256"),
        jwt.encode(_claims(sub=7), KEY, algorithm="HS256"),
        jwt.encode(_claims(), KEY, algorithm="HS512"),
    ],
    ids=["forged", "other-issuer", "other-use", "no-exp", "sub-not-text", "other-algorithm"],
)
def test_a_token_not_ours_in_every_claim_is_401(tokens: Tokens, token: str) -> None:
    with pytest.raises(Unauthorized):
        tokens.user_of(bearer(token))


def test_an_unsigned_token_is_401(tokens: Tokens) -> None:
    """alg "none": the classic forgery; PyJWT refuses it because the algorithm is pinned."""

    def part(data: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    unsigned = f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(_claims())}."
    with pytest.raises(Unauthorized):
        tokens.user_of(bearer(unsigned))


def test_a_deployment_without_a_key_refuses_every_token_and_issues_none(clock: FakeClock) -> None:
    signed = Tokens(KEY, clock, 3600, 900).user_token("ann")["token"]
    keyless = Tokens("", clock, 3600, 900)
    with pytest.raises(Unauthorized):
        keyless.user_of(bearer(signed))
    with pytest.raises(ServiceUnavailable):
        keyless.user_token("ann")


def test_an_admission_admits_its_user_to_its_performance_until_it_expires(
    tokens: Tokens, clock: FakeClock
) -> None:
    admission = tokens.admission_token("ann", 42)
    assert jwt.decode(admission["token"], options={"verify_signature": False})["aud"] == "42"
    tokens.check_admission(admission["token"], "ann", 42)
    with pytest.raises(AdmissionRequired):
        tokens.check_admission(admission["token"], "bob", 42)  # another user's admission
    with pytest.raises(AdmissionRequired):
        tokens.check_admission(admission["token"], "ann", 43)  # another performance's
    with pytest.raises(AdmissionRequired):
        tokens.check_admission(None, "ann", 42)
    clock.advance(900)
    with pytest.raises(AdmissionRequired):
        tokens.check_admission(admission["token"], "ann", 42)


def test_an_identity_is_no_admission_and_an_admission_no_identity(tokens: Tokens) -> None:
    identity, admission = tokens.user_token("ann")["token"], tokens.admission_token("ann", 42)["token"]
    with pytest.raises(AdmissionRequired):
        tokens.check_admission(identity, "ann", 42)
    with pytest.raises(Unauthorized):
        tokens.user_of(bearer(admission))


def test_behind_cognito_the_user_is_the_verified_sub() -> None:
    assert cognito_user({"authorizer": {"claims": {"sub": "0d9e-ann", "email": "a@x"}}}) == "0d9e-ann"
    for context in (
        {},
        {"authorizer": None},
        {"authorizer": {"claims": {}}},
        {"authorizer": {"claims": {"sub": ""}}},
    ):
        with pytest.raises(Unauthorized):
            cognito_user(context)
