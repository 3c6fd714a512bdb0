"""Property tests of JWT verification: any token (any text, any three base64url segments, a token
correctly signed over any claims and header) gives a principal or :class:`AuthenticationFailed`,
never another exception (which the server would turn into a 500 on the auth path)."""

from __future__ import annotations

import base64
import json
from typing import Any

import jwt
from hypothesis import given, settings
from hypothesis import strategies as st

from seawall.auth.jwt import JwtSettings, JwtVerifier, looks_like_jwt
from seawall.core.errors import AuthenticationFailed
from seawall.core.types import Criticality, Principal

SECRET = b"s" * 32
NOW = 1_700_000_000.0
VERIFIER = JwtVerifier(JwtSettings(hs256_secret_env="JWT_SECRET", default_tier="api", audience="seawall"),
                       {"api": Criticality.CRITICAL}, secret=SECRET)

SCALARS = (st.none() | st.booleans() | st.integers() | st.integers(-(10**400), 10**400) | st.floats()
           | st.text(max_size=12))
JSON = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner,
                                                                                          max_size=3), max_leaves=8)
CLAIMS = st.fixed_dictionaries({}, optional={
    "exp": st.floats(NOW - 10, NOW + 10**6) | JSON, "nbf": st.floats(NOW - 10**6, NOW + 10) | JSON,
    "sub": st.text(max_size=300) | JSON, "org_id": st.text(max_size=10) | st.integers() | JSON,
    "tier": st.sampled_from(["api", "free"]) | JSON, "aud": st.just("seawall") | JSON, "iss": JSON, "iat": JSON,
})
HEADERS = st.fixed_dictionaries({}, optional={"kid": st.text(max_size=8) | JSON, "typ": JSON, "crit": JSON,
                                              "b64": JSON, "x5u": JSON})


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def principal_or_401(token: str) -> Principal | None:
    looks_like_jwt(token)
    try:
        principal = VERIFIER.verify(token, NOW)
    except AuthenticationFailed as err:
        assert err.status == 401 and err.reason.startswith("jwt_")
        return None
    assert principal.key_id.startswith("jwt:") and principal.tenant
    return principal


@settings(max_examples=300)
@given(st.text(max_size=300))
def test_any_text_is_a_principal_or_a_401(token: str) -> None:
    principal_or_401(token)


@settings(max_examples=300)
@given(JSON | st.binary(max_size=40), JSON | st.binary(max_size=40), st.binary(max_size=40))
def test_any_three_segments_are_a_principal_or_a_401(header: Any, payload: Any, signature: bytes) -> None:
    parts = [p if isinstance(p, bytes) else json.dumps(p).encode() for p in (header, payload)]
    principal_or_401(".".join([b64(parts[0]), b64(parts[1]), b64(signature)]))


@settings(max_examples=400)
@given(CLAIMS, HEADERS)
def test_any_claims_correctly_signed_are_a_principal_or_a_401(claims: dict[str, Any], headers: dict[str, Any]) -> None:
    try:
        token = jwt.encode(claims, SECRET, algorithm="HS256", headers=headers)
    except (TypeError, ValueError, OverflowError, jwt.PyJWTError):
        return  # not encodable as a JWT at all (pyjwt's own refusal, on the issuer's side)
    principal_or_401(token)


def test_regression_a_non_ascii_token_is_a_401() -> None:
    """Found by the fuzzer: a lone surrogate failed to encode (UnicodeEncodeError) before any check."""
    assert principal_or_401("eyJ\ud800.e30.e30") is None


def test_regression_an_exp_beyond_a_float_is_a_401() -> None:
    """Found by the fuzzer: ``exp: 10**400`` overflowed ``math.isfinite`` (OverflowError)."""
    token = jwt.encode({"exp": 10**400, "sub": "a", "org_id": "o", "aud": "seawall"}, SECRET, algorithm="HS256")
    assert principal_or_401(token) is None
