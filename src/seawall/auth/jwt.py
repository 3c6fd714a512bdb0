"""Local JWT verification, so an outage of the login service never signs out users already signed in.

A bearer token that looks like a JWT is verified here against keys held in memory: static PEM keys
from the config, an HS256 shared secret, and the issuer's JWKS (kept fresh in the background by
:class:`seawall.edges.jwks.JwksRefresher`, which never clears keys when a fetch fails). No I/O
happens on the request path.

Security choices, each deliberate:

- The algorithm comes from the configured allow-list; the token header may only pick one of those,
  and each algorithm only ever sees keys of its own type (HS256 -> the shared secret, RS256 -> RSA
  keys, ES256 -> P-256 keys). That closes the RS256->HS256 "public key as HMAC secret" confusion
  and ``alg: none``.
- ``exp`` is required (a token without one would be valid forever) and, like ``nbf``, is checked
  here against the injected ``now_s`` (Unix seconds) rather than by PyJWT, which reads the clock.
- ``issuer`` / ``audience`` left unset mean "not checked"; set both in production.
- Verified tokens are cached (LRU, keyed by SHA-256 of the token) until their ``exp``; the cache is
  cleared whenever the key set changes, so a key removed from the JWKS stops working at once.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from seawall.core.errors import AuthenticationFailed
from seawall.core.types import Criticality, Principal

__all__ = ["JwtSettings", "JwtVerifier", "load_hs256_secret", "looks_like_jwt"]

log = logging.getLogger("seawall.auth")

Algorithm = Literal["HS256", "RS256", "ES256"]
_ALL_ALGORITHMS: tuple[Algorithm, ...] = ("HS256", "RS256", "ES256")
_ASYMMETRIC: tuple[Algorithm, ...] = ("RS256", "ES256")
MAX_TOKEN_CHARS = 16 * 1024  # larger bearer tokens are refused before any parsing
MIN_RSA_BITS = 2048
MIN_HS256_SECRET_BYTES = 32  # RFC 7518 §3.2: the HS256 key must be at least 256 bits
_MAX_CLAIM_CHARS = 256
_JWT_SHAPE = re.compile(r"eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")


def looks_like_jwt(token: str) -> bool:
    """Cheap routing test: three base64url segments and a JSON header (``eyJ`` is ``{"``)."""
    return len(token) <= MAX_TOKEN_CHARS and _JWT_SHAPE.fullmatch(token) is not None


class JwtSettings(BaseModel):
    """``auth.jwt`` in the config file. Unset ``issuer``/``audience`` are not checked."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    issuer: str | None = Field(default=None, min_length=1)
    audience: str | None = Field(default=None, min_length=1)
    algorithms: list[Algorithm] = Field(
        default_factory=lambda: list(_ALL_ALGORITHMS),
        min_length=1,
        description="allowed algorithms; HS256 counts only when hs256_secret_env is set",
    )
    hs256_secret_env: str | None = Field(
        default=None, min_length=1, description="env var with the HS256 secret"
    )
    public_keys: list[str] = Field(default_factory=list, description="PEM public keys or certificates")
    jwks_url: str | None = None
    jwks_refresh_s: float = Field(default=300.0, ge=1, le=86_400)
    jwks_timeout_s: float = Field(default=5.0, gt=0, le=60)
    leeway_s: float = Field(default=30.0, ge=0, le=600, description="clock skew allowed on exp and nbf")
    tenant_claim: str = Field(default="org_id", min_length=1)
    tier_claim: str = Field(default="tier", min_length=1)
    default_tier: str | None = None
    subject_claim: str = Field(default="sub", min_length=1)
    allowed_tiers: list[str] | None = None
    cache_max_entries: int = Field(default=10_000, ge=0, le=10_000_000, description="0 disables the cache")

    @field_validator("jwks_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is not None:
            parts = urlsplit(value)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError("not a URL (expected http:// or https:// with a host)")
        return value

    @field_validator("public_keys")
    @classmethod
    def _pems(cls, value: list[str]) -> list[str]:
        for i, pem in enumerate(value):
            try:
                _load_pem(pem)
            except ValueError as exc:
                raise ValueError(f"public_keys[{i}]: {exc}") from None
        return value

    @model_validator(mode="after")
    def _consistent(self) -> JwtSettings:
        if "algorithms" in self.model_fields_set:
            if "HS256" in self.algorithms and self.hs256_secret_env is None:
                raise ValueError("algorithms: HS256 needs hs256_secret_env")
            if self.hs256_secret_env is not None and "HS256" not in self.algorithms:
                raise ValueError("hs256_secret_env is set but HS256 is not in algorithms")
        asymmetric = bool(self.public_keys or self.jwks_url)
        if not asymmetric and self.hs256_secret_env is None:
            raise ValueError("no keys: set public_keys, jwks_url or hs256_secret_env")
        if asymmetric and not any(a in self.algorithms for a in _ASYMMETRIC):
            raise ValueError("public_keys/jwks_url are set but neither RS256 nor ES256 is allowed")
        if self.allowed_tiers is not None and self.default_tier is not None:
            if self.default_tier not in self.allowed_tiers:
                raise ValueError("default_tier is not in allowed_tiers")
        return self


def load_hs256_secret(settings: JwtSettings, environ: Mapping[str, str]) -> bytes | None:
    """The HS256 secret from ``environ`` (pass ``os.environ``); ``ValueError`` if named but unset."""
    if settings.hs256_secret_env is None:
        return None
    value = environ.get(settings.hs256_secret_env, "")
    if not value:
        raise ValueError(f"environment variable {settings.hs256_secret_env} (auth.jwt) is empty or unset")
    return value.encode("utf-8")


@dataclass(frozen=True, slots=True)
class _Key:
    alg: Algorithm
    key: Any  # RSAPublicKey or EllipticCurvePublicKey
    kid: str | None = None


def _typed_key(public: Any, kid: str | None) -> _Key:
    if isinstance(public, (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey)):
        public = public.public_key()
    if isinstance(public, rsa.RSAPublicKey):
        if public.key_size < MIN_RSA_BITS:
            raise ValueError(f"RSA key of {public.key_size} bits is too short (minimum {MIN_RSA_BITS})")
        return _Key("RS256", public, kid)
    if isinstance(public, ec.EllipticCurvePublicKey):
        if not isinstance(public.curve, ec.SECP256R1):
            raise ValueError(f"EC curve {public.curve.name} is not supported (ES256 needs P-256)")
        return _Key("ES256", public, kid)
    raise ValueError(f"unsupported key type {type(public).__name__} (expected RSA or EC P-256)")


def _load_pem(pem: str) -> _Key:
    data = pem.strip().encode("ascii", "replace")
    try:
        if b"BEGIN CERTIFICATE" in data:
            public: Any = x509.load_pem_x509_certificate(data).public_key()
        else:
            public = serialization.load_pem_public_key(data)
    except (ValueError, TypeError):
        raise ValueError("not a PEM public key or certificate") from None
    return _typed_key(public, None)


def _parse_jwk(jwk: dict[str, Any]) -> _Key | None:
    """A usable verification key, or ``None`` if the JWK is for something else (enc, HMAC, RS384...)."""
    if jwk.get("use", "sig") != "sig":
        return None
    ops = jwk.get("key_ops")
    if isinstance(ops, list) and "verify" not in ops:
        return None
    kid = jwk.get("kid")
    if kid is not None and not isinstance(kid, str):
        raise ValueError("kid is not a string")
    kty, alg = jwk.get("kty"), jwk.get("alg")
    if kty == "RSA":
        family: Algorithm = "RS256"
    elif kty == "EC" and jwk.get("crv") == "P-256":
        family = "ES256"
    else:
        return None
    if alg is not None and alg != family:
        return None
    try:
        public = RSAAlgorithm.from_jwk(jwk) if family == "RS256" else ECAlgorithm.from_jwk(jwk)
    except (jwt.PyJWTError, ValueError, TypeError, KeyError) as exc:
        raise ValueError(f"unreadable {family} key: {type(exc).__name__}") from None
    return _typed_key(public, kid)


@dataclass(frozen=True, slots=True)
class _KeySet:
    """One JWKS generation, swapped in as a whole so a request never sees half a rotation."""

    by_kid: Mapping[str, tuple[_Key, ...]]
    all: tuple[_Key, ...]
    fingerprint: str


class _TokenCache:
    """Bounded LRU of verified tokens: SHA-256(token) -> (principal, valid_from_s, valid_until_s)."""

    __slots__ = ("_entries", "capacity")

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._entries: OrderedDict[bytes, tuple[Principal, float, float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, digest: bytes) -> tuple[Principal, float, float] | None:
        entry = self._entries.get(digest)
        if entry is not None:
            self._entries.move_to_end(digest)
        return entry

    def put(self, digest: bytes, entry: tuple[Principal, float, float]) -> None:
        if self.capacity <= 0:
            return
        self._entries[digest] = entry
        self._entries.move_to_end(digest)
        while len(self._entries) > self.capacity:
            self._entries.popitem(last=False)

    def drop(self, digest: bytes) -> None:
        self._entries.pop(digest, None)

    def clear(self) -> None:
        self._entries.clear()


def _fail(message: str, reason: str) -> AuthenticationFailed:
    return AuthenticationFailed(message, reason=reason)


def _short(value: object) -> str:
    return repr(value)[:64]


class JwtVerifier:
    """Turns a signed JWT into a :class:`Principal` using only in-memory keys.

    ``tiers`` maps tier name -> criticality (from the config). ``secret`` is the HS256 key (see
    :func:`load_hs256_secret`); without it HS256 is not accepted. ``on_unknown_kid`` (set by the
    JWKS refresher) is called when a token names a key id we do not hold, so a key rotation at the
    issuer is picked up early; the refresher rate-limits it.
    """

    def __init__(
        self, settings: JwtSettings, tiers: Mapping[str, Criticality], *, secret: bytes | None
    ) -> None:
        if settings.hs256_secret_env is not None and secret is None:
            raise ValueError(f"auth.jwt: no HS256 secret given (expected from {settings.hs256_secret_env})")
        if secret is not None and len(secret) < MIN_HS256_SECRET_BYTES:
            raise ValueError(f"auth.jwt: the HS256 secret must be at least {MIN_HS256_SECRET_BYTES} bytes")
        for name in [settings.default_tier, *(settings.allowed_tiers or [])]:
            if name is not None and name not in tiers:
                raise ValueError(f"auth.jwt: tier '{name}' is not a configured tier")
        self.settings = settings
        self._tiers = dict(tiers)
        self._secret = secret
        self._allowed = frozenset(a for a in settings.algorithms if a != "HS256" or secret is not None)
        self._allowed_tiers = None if settings.allowed_tiers is None else frozenset(settings.allowed_tiers)
        self._static = tuple(_load_pem(pem) for pem in settings.public_keys)
        self._jwks = _KeySet({}, (), "")
        self._cache = _TokenCache(settings.cache_max_entries)
        self.on_unknown_kid: Callable[[str], None] | None = None

    @property
    def jwks_size(self) -> int:
        """How many keys the current JWKS generation holds (0 before the first load)."""
        return len(self._jwks.all)

    @property
    def cache_size(self) -> int:
        return len(self._cache)

    def set_jwks(self, jwks_json: dict[str, Any]) -> int:
        """Replace the JWKS key set; return how many keys were loaded.

        Keys we cannot use (encryption keys, HMAC, other algorithms or curves) are skipped. A
        malformed document, a broken signing key, or one with no usable key at all raises
        ``ValueError`` and leaves the previous set in place (fail static).
        """
        raw = jwks_json.get("keys") if isinstance(jwks_json, dict) else None
        if not isinstance(raw, list):
            raise ValueError("JWKS is not an object with a 'keys' list")
        keys: list[_Key] = []
        usable: list[dict[str, Any]] = []
        for i, jwk in enumerate(raw):
            if not isinstance(jwk, dict):
                raise ValueError(f"JWKS keys[{i}] is not an object")
            try:
                key = _parse_jwk(jwk)
            except ValueError as exc:
                raise ValueError(f"JWKS keys[{i}]: {exc}") from None
            if key is not None:
                keys.append(key)
                usable.append(jwk)
        if not keys:
            raise ValueError("JWKS holds no usable RS256/ES256 signing key")
        by_kid: dict[str, tuple[_Key, ...]] = {}
        for key in keys:
            if key.kid is not None:
                by_kid[key.kid] = (*by_kid.get(key.kid, ()), key)
        fingerprint = hashlib.sha256(json.dumps(usable, sort_keys=True, default=str).encode()).hexdigest()
        if fingerprint != self._jwks.fingerprint:
            self._cache.clear()  # a key may have been withdrawn: re-verify everything
        self._jwks = _KeySet(by_kid, tuple(keys), fingerprint)
        return len(keys)

    def verify(self, token: str, now_s: float) -> Principal:
        """The principal for ``token`` at ``now_s`` (Unix seconds); raises ``AuthenticationFailed``."""
        if len(token) > MAX_TOKEN_CHARS:
            raise _fail("token is too large", "jwt_malformed")
        if not token.isascii():  # a JWT is base64url; anything else could not even be encoded to hash it
            raise _fail("token is malformed", "jwt_malformed")
        digest = hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()
        hit = self._cache.get(digest)
        if hit is not None:
            principal, valid_from_s, valid_until_s = hit
            if now_s >= valid_until_s:
                self._cache.drop(digest)
                raise _fail("token has expired", "jwt_expired")
            if now_s < valid_from_s:
                raise _fail("token is not yet valid (nbf)", "jwt_not_yet_valid")
            return principal
        claims = self._verified_claims(token)
        principal, valid_from_s, valid_until_s = self._principal(claims, now_s)
        self._cache.put(digest, (principal, valid_from_s, valid_until_s))
        return principal

    def _verified_claims(self, token: str) -> dict[str, Any]:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise _fail("token is malformed", "jwt_malformed") from None
        alg, kid = header.get("alg"), header.get("kid")
        if not isinstance(alg, str) or (kid is not None and not isinstance(kid, str)):
            raise _fail("token header is malformed", "jwt_malformed")
        if alg.lower() == "none":
            raise _fail("unsigned tokens (alg 'none') are not accepted", "jwt_bad_algorithm")
        if alg not in self._allowed:
            raise _fail(f"token algorithm {_short(alg)} is not allowed", "jwt_bad_algorithm")
        candidates = self._candidates(alg, kid)
        if not candidates:
            raise _fail(f"no {alg} key is loaded to verify this token", "jwt_no_key")
        for key in candidates:
            try:
                return jwt.decode(
                    token,
                    key=key,
                    algorithms=[alg],
                    audience=self.settings.audience,
                    issuer=self.settings.issuer,
                    options={
                        "verify_signature": True,
                        "verify_exp": False,  # checked against the injected now_s instead
                        "verify_nbf": False,
                        "verify_iat": False,
                        "verify_aud": self.settings.audience is not None,
                        "verify_iss": self.settings.issuer is not None,
                    },
                )
            except jwt.InvalidSignatureError:
                continue  # try the next candidate key
            except jwt.InvalidAudienceError:
                raise _fail("token audience does not match", "jwt_wrong_audience") from None
            except jwt.InvalidIssuerError:
                raise _fail("token issuer does not match", "jwt_wrong_issuer") from None
            except jwt.MissingRequiredClaimError as exc:
                raise _fail(f"token is missing claim '{exc.claim}'", "jwt_missing_claim") from None
            except jwt.DecodeError:
                raise _fail("token is malformed", "jwt_malformed") from None
            except jwt.PyJWTError as exc:
                raise _fail(f"token is invalid ({type(exc).__name__})", "jwt_invalid") from None
        raise _fail("token signature does not verify", "jwt_bad_signature")

    def _candidates(self, alg: str, kid: str | None) -> list[Any]:
        """Keys that may verify an ``alg`` token: by kid when known, else every key of that type."""
        if alg == "HS256":
            return [self._secret]
        jwks = self._jwks
        static = [k.key for k in self._static if k.alg == alg]
        if kid is None:
            return static + [k.key for k in jwks.all if k.alg == alg]
        named = jwks.by_kid.get(kid)
        if named is not None:
            return [k.key for k in named if k.alg == alg]
        if self.on_unknown_kid is not None:
            self.on_unknown_kid(kid)
        if not static:
            raise _fail(f"token key id {_short(kid)} is unknown", "jwt_unknown_kid")
        return static

    def _principal(self, claims: dict[str, Any], now_s: float) -> tuple[Principal, float, float]:
        s = self.settings
        exp = _number(claims, "exp")
        if exp is None:
            raise _fail("token is missing claim 'exp'", "jwt_missing_claim")
        valid_until_s = exp + s.leeway_s
        if now_s >= valid_until_s:
            raise _fail("token has expired", "jwt_expired")
        nbf = _number(claims, "nbf")
        valid_from_s = -math.inf if nbf is None else nbf - s.leeway_s
        if now_s < valid_from_s:
            raise _fail("token is not yet valid (nbf)", "jwt_not_yet_valid")
        subject = _text(claims, s.subject_claim)
        tenant = _text(claims, s.tenant_claim)
        tier = _text(claims, s.tier_claim, default=s.default_tier)
        criticality = self._tiers.get(tier)
        if criticality is None:
            raise _fail(f"token tier {_short(tier)} is not a known tier", "jwt_unknown_tier")
        if self._allowed_tiers is not None and tier not in self._allowed_tiers:
            raise _fail(f"token tier {_short(tier)} is not allowed here", "jwt_tier_not_allowed")
        principal = Principal(f"jwt:{subject}", tenant, tier, criticality, None, "jwt")
        return principal, valid_from_s, valid_until_s


def _number(claims: dict[str, Any], name: str) -> float | None:
    value = claims.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _fail(f"token claim '{name}' is not a number", "jwt_bad_claim")
    try:
        number = float(value)  # an integer beyond a double overflows
    except OverflowError:
        number = math.inf
    if not math.isfinite(number):
        raise _fail(f"token claim '{name}' is not a number", "jwt_bad_claim")
    return number


def _text(claims: dict[str, Any], name: str, *, default: str | None = None) -> str:
    """A string claim, else ``default``; integers are accepted (numeric org ids) as decimal text."""
    value = claims.get(name)
    if value is None or value == "":
        if default is None:
            raise _fail(f"token is missing claim '{name}'", "jwt_missing_claim")
        return default
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or len(value) > _MAX_CLAIM_CHARS:
        raise _fail(f"token claim '{name}' is not a string", "jwt_bad_claim")
    return value
