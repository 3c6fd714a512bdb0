"""Local JWT verification: algorithms, time checks on an injected clock, attacks, claims, cache."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import signal
from collections.abc import Iterator
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm
from pydantic import ValidationError

from seawall.auth import jwt as sjwt
from seawall.auth.jwt import JwtSettings, JwtVerifier, load_hs256_secret, looks_like_jwt
from seawall.core.errors import AuthenticationFailed
from seawall.core.types import Criticality

NOW = 1_700_000_000.0
SECRET = b"s" * 40
TIERS = {
    "enterprise": Criticality.CRITICAL_PLUS,
    "api": Criticality.CRITICAL,
    "free": Criticality.SHEDDABLE,
}


@pytest.fixture(autouse=True)
def _bounded() -> Iterator[None]:
    """Every test here is pure CPU; fail it if it takes more than 10 s."""

    def expire(signum: int, frame: object) -> None:
        raise TimeoutError("test exceeded 10 s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, 10.0)
    yield
    signal.setitimer(signal.ITIMER_REAL, 0)
    signal.signal(signal.SIGALRM, previous)


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def rsa_key2() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def pem(private: Any) -> str:
    return (
        private.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def jwk(private: Any, kid: str | None, **extra: Any) -> dict[str, Any]:
    public = private.public_key()
    if isinstance(public, rsa.RSAPublicKey):
        out = RSAAlgorithm.to_jwk(public, as_dict=True)
    else:
        out = ECAlgorithm.to_jwk(public, as_dict=True)
    if kid is not None:
        out["kid"] = kid
    out.update(extra)
    return out


def claims(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"sub": "alice", "org_id": "acme", "tier": "api", "exp": NOW + 3600}
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def sign(payload: dict[str, Any], key: Any, alg: str, kid: str | None = None) -> str:
    headers = {"kid": kid} if kid is not None else None
    return jwt.encode(payload, key, algorithm=alg, headers=headers)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hand_made(header: dict[str, Any], payload: dict[str, Any], hmac_key: bytes | None) -> str:
    """A token built without PyJWT, for the attacks PyJWT refuses to produce."""
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(payload).encode())}"
    sig = b"" if hmac_key is None else hmac.new(hmac_key, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(sig)}"


def verifier(*, secret: bytes | None = None, **settings: Any) -> JwtVerifier:
    if secret is not None:
        settings.setdefault("hs256_secret_env", "JWT_SECRET")
    return JwtVerifier(JwtSettings(**settings), TIERS, secret=secret)


def rejected(v: JwtVerifier, token: str, now_s: float = NOW) -> AuthenticationFailed:
    with pytest.raises(AuthenticationFailed) as info:
        v.verify(token, now_s)
    assert info.value.status == 401
    return info.value


# --- each algorithm -----------------------------------------------------------------------------


def test_rs256_with_a_static_pem_key(rsa_key: rsa.RSAPrivateKey) -> None:
    v = verifier(public_keys=[pem(rsa_key)])
    p = v.verify(sign(claims(), rsa_key, "RS256"), NOW)
    assert (p.key_id, p.tenant, p.tier, p.criticality) == ("jwt:alice", "acme", "api", Criticality.CRITICAL)
    assert p.source == "jwt" and p.models is None


def test_es256_with_a_static_pem_key(ec_key: ec.EllipticCurvePrivateKey) -> None:
    v = verifier(public_keys=[pem(ec_key)])
    assert v.verify(sign(claims(tier="free"), ec_key, "ES256"), NOW).criticality is Criticality.SHEDDABLE


def test_hs256_with_the_shared_secret() -> None:
    v = verifier(secret=SECRET)
    assert v.verify(sign(claims(), SECRET, "HS256"), NOW).tenant == "acme"
    assert "token signature" in rejected(v, sign(claims(), b"x" * 40, "HS256")).message


def test_rs256_and_es256_from_a_jwks_by_kid(rsa_key: rsa.RSAPrivateKey, ec_key: Any) -> None:
    v = verifier(jwks_url="https://login.example.com/jwks")
    assert v.set_jwks({"keys": [jwk(rsa_key, "r1"), jwk(ec_key, "e1")]}) == 2
    assert v.verify(sign(claims(), rsa_key, "RS256", kid="r1"), NOW).key_id == "jwt:alice"
    assert v.verify(sign(claims(sub="bob"), ec_key, "ES256", kid="e1"), NOW).key_id == "jwt:bob"


def test_token_without_kid_tries_every_key_of_its_type(rsa_key: Any, rsa_key2: Any, ec_key: Any) -> None:
    v = verifier(jwks_url="https://login.example.com/jwks")
    v.set_jwks({"keys": [jwk(rsa_key, "r1"), jwk(ec_key, None), jwk(rsa_key2, "r2")]})
    assert v.verify(sign(claims(), rsa_key2, "RS256"), NOW).tenant == "acme"
    assert v.verify(sign(claims(sub="e"), ec_key, "ES256"), NOW).key_id == "jwt:e"


def test_known_kid_with_the_wrong_key_is_a_bad_signature(rsa_key: Any, rsa_key2: Any) -> None:
    v = verifier(jwks_url="https://login.example.com/jwks")
    v.set_jwks({"keys": [jwk(rsa_key, "r1"), jwk(rsa_key2, "r2")]})
    err = rejected(v, sign(claims(), rsa_key2, "RS256", kid="r1"))
    assert err.reason == "jwt_bad_signature" and "signature" in err.message


# --- time: exp and nbf against the injected now -------------------------------------------------


@pytest.mark.parametrize(
    ("now_s", "ok"),
    [(NOW + 3600 - 1, True), (NOW + 3600 + 29, True), (NOW + 3600 + 30, False), (NOW + 10**6, False)],
)
def test_expiry_uses_the_injected_now_with_leeway(rsa_key: Any, now_s: float, ok: bool) -> None:
    v = verifier(public_keys=[pem(rsa_key)], leeway_s=30)
    token = sign(claims(), rsa_key, "RS256")
    if ok:
        assert v.verify(token, now_s).tenant == "acme"
    else:
        err = rejected(v, token, now_s)
        assert err.message == "token has expired" and err.reason == "jwt_expired"


def test_a_token_expired_by_wall_time_is_valid_at_an_injected_past_now(rsa_key: Any) -> None:
    """Proves PyJWT's own clock is not consulted: exp is in 2023, the wall clock is later."""
    v = verifier(public_keys=[pem(rsa_key)])
    assert v.verify(sign(claims(exp=NOW + 60), rsa_key, "RS256"), NOW).tenant == "acme"


@pytest.mark.parametrize(("nbf_offset_s", "ok"), [(-100, True), (25, True), (31, False), (3000, False)])
def test_not_before_with_leeway(rsa_key: Any, nbf_offset_s: float, ok: bool) -> None:
    v = verifier(public_keys=[pem(rsa_key)], leeway_s=30)
    token = sign(claims(nbf=NOW + nbf_offset_s), rsa_key, "RS256")
    if ok:
        assert v.verify(token, NOW).tenant == "acme"
    else:
        assert rejected(v, token).message == "token is not yet valid (nbf)"


def test_exp_is_required_and_must_be_a_finite_number(rsa_key: Any) -> None:
    v = verifier(public_keys=[pem(rsa_key)])
    assert rejected(v, sign(claims(exp=None), rsa_key, "RS256")).message == "token is missing claim 'exp'"
    for bad in ("tomorrow", True, [1]):
        assert "'exp' is not a number" in rejected(v, sign(claims(exp=bad), rsa_key, "RS256")).message
    inf_token = hand_made({"alg": "HS256"}, {**claims(), "exp": float("inf")}, SECRET)
    assert "'exp' is not a number" in rejected(verifier(secret=SECRET), inf_token).message


# --- issuer and audience ------------------------------------------------------------------------


def test_audience_and_issuer_are_checked_when_configured(rsa_key: Any) -> None:
    v = verifier(public_keys=[pem(rsa_key)], issuer="https://login.example.com", audience="seawall")
    good = claims(iss="https://login.example.com", aud=["other", "seawall"])
    assert v.verify(sign(good, rsa_key, "RS256"), NOW).tenant == "acme"
    wrong_aud = rejected(v, sign({**good, "aud": "another-api"}, rsa_key, "RS256"))
    assert wrong_aud.message == "token audience does not match" and wrong_aud.reason == "jwt_wrong_audience"
    wrong_iss = rejected(v, sign({**good, "iss": "https://evil.example.com"}, rsa_key, "RS256"))
    assert wrong_iss.message == "token issuer does not match" and wrong_iss.reason == "jwt_wrong_issuer"
    no_aud = {k: x for k, x in good.items() if k != "aud"}
    assert rejected(v, sign(no_aud, rsa_key, "RS256")).message == "token is missing claim 'aud'"


def test_unset_audience_and_issuer_are_not_checked(rsa_key: Any) -> None:
    v = verifier(public_keys=[pem(rsa_key)])
    assert v.verify(sign(claims(aud="x", iss="y"), rsa_key, "RS256"), NOW).tenant == "acme"


# --- algorithm attacks --------------------------------------------------------------------------


def test_hs256_signed_with_the_rsa_public_key_is_rejected(rsa_key: Any) -> None:
    """The classic confusion: the attacker uses the (public) RSA PEM as an HMAC secret."""
    public_pem = pem(rsa_key).encode()
    forged = hand_made({"alg": "HS256", "typ": "JWT"}, claims(tier="enterprise"), public_pem)
    rsa_only = verifier(public_keys=[pem(rsa_key)])
    assert rejected(rsa_only, forged).message == "token algorithm 'HS256' is not allowed"
    both = verifier(public_keys=[pem(rsa_key)], secret=SECRET)
    assert rejected(both, forged).reason == "jwt_bad_signature"


@pytest.mark.parametrize("alg", ["none", "None", "NONE"])
def test_alg_none_is_rejected(rsa_key: Any, alg: str) -> None:
    v = verifier(public_keys=[pem(rsa_key)], secret=SECRET)
    err = rejected(v, hand_made({"alg": alg}, claims(), None))
    assert "alg 'none'" in err.message and err.reason == "jwt_bad_algorithm"


def test_algorithms_outside_the_allow_list_are_rejected(rsa_key: Any, ec_key: Any) -> None:
    v = verifier(public_keys=[pem(ec_key)], algorithms=["ES256"])
    assert "'RS256' is not allowed" in rejected(v, sign(claims(), rsa_key, "RS256")).message
    assert "'HS512' is not allowed" in rejected(v, sign(claims(), SECRET * 2, "HS512")).message
    assert "'RS384' is not allowed" in rejected(v, sign(claims(), rsa_key, "RS384")).message


def test_es256_header_on_an_rsa_signature_never_reaches_the_rsa_key(rsa_key: Any) -> None:
    v = verifier(public_keys=[pem(rsa_key)])
    token = sign(claims(), rsa_key, "RS256")
    header, rest = token.split(".", 1)
    swapped = f"{b64(json.dumps({'alg': 'ES256', 'typ': 'JWT'}).encode())}.{rest}"
    assert rejected(v, swapped).reason == "jwt_no_key"
    assert header  # the original header was well formed


def test_hs256_is_off_without_a_secret_even_by_default(rsa_key: Any) -> None:
    v = verifier(public_keys=[pem(rsa_key)])
    assert "HS256" not in v._allowed
    assert "not allowed" in rejected(v, sign(claims(), SECRET, "HS256")).message


# --- key ids ------------------------------------------------------------------------------------


def test_unknown_kid_is_rejected_and_reported(rsa_key: Any, rsa_key2: Any) -> None:
    v = verifier(jwks_url="https://login.example.com/jwks")
    v.set_jwks({"keys": [jwk(rsa_key, "r1")]})
    seen: list[str] = []
    v.on_unknown_kid = seen.append
    err = rejected(v, sign(claims(), rsa_key2, "RS256", kid="r9"))
    assert err.message == "token key id 'r9' is unknown" and err.reason == "jwt_unknown_kid"
    assert seen == ["r9"]


def test_unknown_kid_falls_back_to_static_keys(rsa_key: Any, rsa_key2: Any) -> None:
    v = verifier(public_keys=[pem(rsa_key2)], jwks_url="https://login.example.com/jwks")
    v.set_jwks({"keys": [jwk(rsa_key, "r1")]})
    assert v.verify(sign(claims(), rsa_key2, "RS256", kid="static-1"), NOW).tenant == "acme"


# --- claims -------------------------------------------------------------------------------------


def test_missing_tenant_or_subject_claim(rsa_key: Any) -> None:
    v = verifier(public_keys=[pem(rsa_key)])
    err = rejected(v, sign(claims(org_id=None), rsa_key, "RS256"))
    assert err.message == "token is missing claim 'org_id'" and err.reason == "jwt_missing_claim"
    assert rejected(v, sign(claims(sub=None), rsa_key, "RS256")).message == "token is missing claim 'sub'"
    assert rejected(v, sign(claims(org_id=""), rsa_key, "RS256")).reason == "jwt_missing_claim"
    assert rejected(v, sign(claims(org_id={"id": 1}), rsa_key, "RS256")).reason == "jwt_bad_claim"


def test_custom_claim_names_and_numeric_tenant(rsa_key: Any) -> None:
    v = verifier(public_keys=[pem(rsa_key)], tenant_claim="tid", tier_claim="plan", subject_claim="email")
    token = sign({"email": "a@x.io", "tid": 42, "plan": "enterprise", "exp": NOW + 60}, rsa_key, "RS256")
    p = v.verify(token, NOW)
    assert (p.key_id, p.tenant, p.tier, p.criticality) == (
        "jwt:a@x.io",
        "42",
        "enterprise",
        Criticality.CRITICAL_PLUS,
    )


def test_tier_mapping_default_unknown_and_allowed(rsa_key: Any) -> None:
    strict = verifier(public_keys=[pem(rsa_key)])
    assert (
        rejected(strict, sign(claims(tier=None), rsa_key, "RS256")).message == "token is missing claim 'tier'"
    )
    err = rejected(strict, sign(claims(tier="gold"), rsa_key, "RS256"))
    assert err.message == "token tier 'gold' is not a known tier" and err.reason == "jwt_unknown_tier"

    lenient = verifier(public_keys=[pem(rsa_key)], default_tier="free", allowed_tiers=["free", "api"])
    assert lenient.verify(sign(claims(tier=None), rsa_key, "RS256"), NOW).criticality is Criticality.SHEDDABLE
    assert lenient.verify(sign(claims(sub="b"), rsa_key, "RS256"), NOW).criticality is Criticality.CRITICAL
    denied = rejected(lenient, sign(claims(sub="c", tier="enterprise"), rsa_key, "RS256"))
    assert denied.reason == "jwt_tier_not_allowed" and "'enterprise'" in denied.message


# --- the verified-token cache -------------------------------------------------------------------


def test_cache_hit_skips_signature_verification(rsa_key: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    v = verifier(public_keys=[pem(rsa_key)])
    token = sign(claims(), rsa_key, "RS256")
    calls: list[str] = []
    real_decode = sjwt.jwt.decode

    def counting_decode(*args: Any, **kwargs: Any) -> Any:
        calls.append("decode")
        return real_decode(*args, **kwargs)

    monkeypatch.setattr(sjwt.jwt, "decode", counting_decode)
    first = v.verify(token, NOW)
    for i in range(5):
        assert v.verify(token, NOW + i) is first
    assert calls == ["decode"] and v.cache_size == 1


def test_cached_token_still_expires(rsa_key: Any) -> None:
    v = verifier(public_keys=[pem(rsa_key)], leeway_s=0)
    token = sign(claims(exp=NOW + 60), rsa_key, "RS256")
    v.verify(token, NOW)
    assert v.cache_size == 1
    assert v.verify(token, NOW + 59.9).tenant == "acme"
    assert rejected(v, token, NOW + 60).reason == "jwt_expired"
    assert v.cache_size == 0
    assert rejected(v, token, NOW + 61).reason == "jwt_expired"  # and not by the cache path now


def test_cached_token_honours_nbf_if_the_clock_steps_back(rsa_key: Any) -> None:
    v = verifier(public_keys=[pem(rsa_key)], leeway_s=0)
    token = sign(claims(nbf=NOW), rsa_key, "RS256")
    v.verify(token, NOW + 1)
    assert rejected(v, token, NOW - 5).reason == "jwt_not_yet_valid"


def test_cache_is_bounded_and_least_recently_used_goes_first(rsa_key: Any, monkeypatch: Any) -> None:
    v = verifier(public_keys=[pem(rsa_key)], cache_max_entries=2)
    a, b, c = (sign(claims(sub=s), rsa_key, "RS256") for s in "abc")
    v.verify(a, NOW)
    v.verify(b, NOW)
    v.verify(a, NOW)  # a is now the most recent
    v.verify(c, NOW)  # evicts b
    assert v.cache_size == 2
    monkeypatch.setattr(sjwt.jwt, "decode", lambda *a, **k: pytest.fail("a should be cached"))
    assert v.verify(a, NOW).key_id == "jwt:a"


def test_zero_capacity_disables_the_cache(rsa_key: Any) -> None:
    v = verifier(public_keys=[pem(rsa_key)], cache_max_entries=0)
    v.verify(sign(claims(), rsa_key, "RS256"), NOW)
    assert v.cache_size == 0


def test_a_changed_key_set_clears_the_cache(rsa_key: Any, rsa_key2: Any) -> None:
    v = verifier(jwks_url="https://login.example.com/jwks")
    v.set_jwks({"keys": [jwk(rsa_key, "r1"), jwk(rsa_key2, "r2")]})
    token = sign(claims(), rsa_key, "RS256", kid="r1")
    v.verify(token, NOW)
    v.set_jwks({"keys": [jwk(rsa_key, "r1"), jwk(rsa_key2, "r2")]})  # same set: cache kept
    assert v.cache_size == 1
    v.set_jwks({"keys": [jwk(rsa_key2, "r2")]})  # r1 withdrawn
    assert v.cache_size == 0
    assert rejected(v, token).reason == "jwt_unknown_kid"


# --- JWKS input ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "document",
    [
        {},
        {"keys": "nope"},
        {"keys": []},
        {"keys": [1]},
        {"keys": [{"kty": "RSA", "kid": "bad", "n": "!!", "e": "AQAB"}]},
        {"keys": [{"kty": "oct", "kid": "h", "k": "c2VjcmV0"}]},
        {"keys": [{"kty": "RSA", "kid": 7, "n": "AQAB", "e": "AQAB"}]},
    ],
)
def test_malformed_jwks_raises_and_keeps_the_old_keys(rsa_key: Any, document: Any) -> None:
    v = verifier(jwks_url="https://login.example.com/jwks")
    v.set_jwks({"keys": [jwk(rsa_key, "r1")]})
    with pytest.raises(ValueError):
        v.set_jwks(document)
    assert v.jwks_size == 1
    assert v.verify(sign(claims(), rsa_key, "RS256", kid="r1"), NOW).tenant == "acme"


def test_jwks_skips_keys_it_cannot_use(rsa_key: Any) -> None:
    p384 = ec.generate_private_key(ec.SECP384R1())
    v = verifier(jwks_url="https://login.example.com/jwks")
    document = {
        "keys": [
            jwk(p384, "p384"),
            jwk(rsa_key, "enc", use="enc"),
            jwk(rsa_key, "rs512", alg="RS512"),
            {"kty": "oct", "kid": "h", "k": "c2VjcmV0"},
            jwk(rsa_key, "r1", alg="RS256", use="sig"),
        ]
    }
    assert v.set_jwks(document) == 1
    assert rejected(v, sign(claims(), rsa_key, "RS256", kid="enc")).reason == "jwt_unknown_kid"


# --- malformed tokens ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "token",
    [
        "",
        "garbage",
        "eyJhbGciOiJSUzI1NiJ9.e30",  # two segments
        "eyJhbGciOiJSUzI1NiJ9.!!!.abc",  # bad base64 in the payload
        "eyJ!!!.e30.abc",  # bad base64 in the header
        f"{b64(b'not json')}.e30.abc",
        f"{b64(b'[1,2]')}.e30.abc",
        f"{b64(json.dumps({'alg': 'RS256', 'kid': 5}).encode())}.e30.abc",
        "eyJ" + "A" * (sjwt.MAX_TOKEN_CHARS + 1),
    ],
)
def test_malformed_tokens_are_authentication_failures(rsa_key: Any, token: str) -> None:
    v = verifier(public_keys=[pem(rsa_key)], secret=SECRET)
    err = rejected(v, token)
    assert err.reason in ("jwt_malformed", "jwt_invalid")
    assert "Traceback" not in err.message and (len(token) < 8 or token not in err.message)


def test_payload_that_is_not_json_but_correctly_signed() -> None:
    signing_input = f"{b64(json.dumps({'alg': 'HS256'}).encode())}.{b64(b'not json')}"
    sig = hmac.new(SECRET, signing_input.encode(), hashlib.sha256).digest()
    assert rejected(verifier(secret=SECRET), f"{signing_input}.{b64(sig)}").reason == "jwt_malformed"


def test_messages_never_contain_the_secret_or_the_token(rsa_key: Any) -> None:
    v = verifier(public_keys=[pem(rsa_key)], secret=SECRET, audience="seawall")
    for token in (sign(claims(aud="x"), SECRET, "HS256"), sign(claims(), b"y" * 40, "HS256")):
        err = rejected(v, token)
        assert SECRET.decode() not in str(err) and token not in str(err)


# --- routing helper -----------------------------------------------------------------------------


def test_looks_like_jwt(rsa_key: Any) -> None:
    assert looks_like_jwt(sign(claims(), rsa_key, "RS256"))
    assert looks_like_jwt(hand_made({"alg": "none"}, claims(), None))  # routed to JWT, then rejected
    for other in ("sw-0123456789ab-" + "f" * 48, "eyJabc.def", "abc.def.ghi", "eyJa.b.c.d", "eyJa.b c.d", ""):
        assert not looks_like_jwt(other), other


# --- settings and construction ------------------------------------------------------------------


def test_settings_defaults_and_units() -> None:
    s = JwtSettings(jwks_url="https://login.example.com/.well-known/jwks.json")
    assert (s.jwks_refresh_s, s.leeway_s, s.cache_max_entries) == (300.0, 30.0, 10_000)
    assert (s.tenant_claim, s.tier_claim, s.subject_claim) == ("org_id", "tier", "sub")
    assert s.algorithms == ["HS256", "RS256", "ES256"]


@pytest.mark.parametrize(
    ("fields", "needle"),
    [
        ({"algorithms": ["HS256"]}, "HS256 needs hs256_secret_env"),
        ({"hs256_secret_env": "S", "algorithms": ["RS256"], "jwks_url": "https://x.io/j"}, "HS256 is not"),
        ({}, "no keys"),
        ({"jwks_url": "ftp://x.io/jwks"}, "not a URL"),
        ({"jwks_url": "https:///jwks"}, "not a URL"),
        ({"public_keys": ["-----BEGIN PUBLIC KEY-----\nnope\n-----END PUBLIC KEY-----"]}, "public_keys[0]"),
        ({"jwks_url": "https://x.io/j", "surprise": 1}, "surprise"),
        ({"jwks_url": "https://x.io/j", "algorithms": ["RS512"]}, "algorithms"),
        ({"jwks_url": "https://x.io/j", "algorithms": []}, "algorithms"),
        ({"jwks_url": "https://x.io/j", "default_tier": "free", "allowed_tiers": ["api"]}, "default_tier"),
        ({"jwks_url": "https://x.io/j", "leeway_s": -1}, "leeway_s"),
    ],
)
def test_settings_validation(fields: dict[str, Any], needle: str) -> None:
    with pytest.raises(ValidationError) as info:
        JwtSettings(**fields)
    assert needle in str(info.value)


def test_weak_or_unsupported_static_keys_are_refused() -> None:
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    with pytest.raises(ValidationError, match="too short"):
        JwtSettings(public_keys=[pem(weak)])
    with pytest.raises(ValidationError, match="P-256"):
        JwtSettings(public_keys=[pem(ec.generate_private_key(ec.SECP384R1()))])


def test_verifier_construction_checks(rsa_key: Any) -> None:
    with pytest.raises(ValueError, match="no HS256 secret"):
        JwtVerifier(JwtSettings(hs256_secret_env="S"), TIERS, secret=None)
    with pytest.raises(ValueError, match="at least 32 bytes"):
        JwtVerifier(JwtSettings(hs256_secret_env="S"), TIERS, secret=b"short")
    with pytest.raises(ValueError, match="tier 'gold'"):
        JwtVerifier(JwtSettings(public_keys=[pem(rsa_key)], default_tier="gold"), TIERS, secret=None)


def test_load_hs256_secret() -> None:
    s = JwtSettings(hs256_secret_env="JWT_SECRET")
    assert load_hs256_secret(s, {"JWT_SECRET": "k" * 32}) == b"k" * 32
    with pytest.raises(ValueError, match="JWT_SECRET"):
        load_hs256_secret(s, {})
    assert load_hs256_secret(JwtSettings(jwks_url="https://x.io/j"), {}) is None
