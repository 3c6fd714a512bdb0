"""Auth: API key or JWT -> principal (tenant, tier, criticality), with no I/O on the request path.

Keys are checked against the in-memory snapshot (one SHA-256, one dict lookup, a constant-time
compare); JWTs are verified locally against configured or background-fetched keys. Failed attempts
are throttled per client address: once an address has spent its failure budget, only the cheap
checks still run for it (a valid key always works), and everything else gets 429 without touching
the expensive JWT signature path. This is what keeps a login storm from becoming an outage.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from seawall.algorithms.gcra import KeyedGcra
from seawall.auth.keys import KeyRefresher, NegativeCache, split_key
from seawall.core.compose import Handler
from seawall.core.errors import AuthenticationFailed, RateLimited
from seawall.core.types import Criticality, Principal, Request, Response
from seawall.env import Clock

__all__ = ["AuthPolicy", "charge_failure", "extract_credential"]


def extract_credential(headers: Mapping[str, str]) -> str | None:
    """``Authorization: Bearer <token>`` (OpenAI SDK) or ``x-api-key`` (Anthropic SDK)."""
    value = headers.get("authorization")
    if value is not None:
        scheme, _, token = value.partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
        return None
    value = headers.get("x-api-key")
    return value.strip() or None if value is not None else None


def charge_failure(throttle: KeyedGcra, client_addr: str, now_s: float) -> bool:
    """One failed authentication from ``client_addr``: False when the address is already throttled
    (refused with 429 ``auth_throttle`` and not charged again), else True, charged to the address
    (refused with 401). The auth policy and the simulator's invalid-key flood both decide here."""
    if throttle.would_wait(client_addr, now_s) > 0:
        return False
    throttle.take(client_addr, now_s)
    return True


class AuthPolicy:
    def __init__(
        self,
        keys: KeyRefresher,
        *,
        clock: Clock,
        failure_throttle: KeyedGcra,
        negative_cache: NegativeCache,
        jwt: Any | None = None,
        admin_key: str | None = None,
        on_failure: Any | None = None,
    ) -> None:
        self.keys = keys
        self.clock = clock
        self.throttle = failure_throttle
        self.negative = negative_cache
        self.jwt = jwt
        self.admin_key = admin_key
        self.on_failure = on_failure  # callable(reason: str) for metrics

    def authenticate(self, headers: Mapping[str, str], client_addr: str) -> Principal:
        """Resolve a principal or raise 401/429; usable outside the stack (admin routes)."""
        now = self.clock.now()
        throttled = self.throttle.would_wait(client_addr, now) > 0
        token = extract_credential(headers)
        if token is None:
            self._fail(client_addr, now, "missing")
            raise AuthenticationFailed(
                "Missing API key: send 'Authorization: Bearer <key>' or 'x-api-key: <key>'.",
                code="missing_api_key",
            )
        principal = self.keys.snapshot.verify(token)
        if principal is not None:
            return principal
        if self.admin_key is not None and token == self.admin_key:
            return Principal("admin", "admin", "admin", Criticality.CRITICAL_PLUS, None, "admin", admin=True)
        key_id = split_key(token)
        if key_id is None and self.jwt is not None and not throttled:
            try:
                return self.jwt.verify(token, self.clock.wall())
            except AuthenticationFailed:
                self._fail(client_addr, now, "jwt")
                raise
        if not charge_failure(self.throttle, client_addr, now):
            wait = max(self.throttle.would_wait(client_addr, now), 1.0)
            self._count("throttled")
            raise RateLimited(
                "Too many failed authentication attempts from this address; slow down.",
                code="auth_throttled",
                retry_after_s=wait,
                reason="auth_throttle",
            )
        if key_id is not None and not self.keys.snapshot.knows(key_id) and not self.negative.hit(key_id, now):
            # Perhaps created a moment ago: ask for an early refresh, once per id per TTL.
            self.negative.add(key_id, now)
            self.keys.poke()
        self._count("invalid")
        raise AuthenticationFailed("Invalid API key.", code="invalid_api_key")

    def _fail(self, client_addr: str, now: float, reason: str) -> None:
        self.throttle.take(client_addr, now)
        self._count(reason)

    def _count(self, reason: str) -> None:
        if self.on_failure is not None:
            self.on_failure(reason)

    async def __call__(self, request: Request, next_handler: Handler) -> Response:
        principal = self.authenticate(request.headers, request.client_addr)
        request.ctx.principal = principal
        request.ctx.criticality = principal.criticality
        return await next_handler(request)

