"""Quota: each key and each tenant gets its requests/min, tokens/min, concurrency and tokens/day.

Position: after auth (the key, tenant and tier are known) and before admission (a caller over its
own quota must not take a place in the queue for shared capacity). The decision is made by a
:class:`QuotaService` (this module declares the interface; ``seawall.edges.quota`` implements it
across replicas: in-process from leases on the Redis
counters far from a limit, on Redis near it; local counters otherwise, and as the fail-static
fallback); this policy resolves the limits, estimates the tokens
(:func:`seawall.policies.route.work_units`: prompt bytes / 4 + ``max_tokens``), turns a refusal
into a typed 429 and settles the charge with the actual usage when the request, or its stream,
ends. Every response, refusals included, carries ``x-ratelimit-{limit,remaining,reset}-{requests,
tokens}`` for the tightest per-minute bucket of the key and its tenant.
"""

from __future__ import annotations

import enum
import math
from collections.abc import AsyncIterator, Awaitable, Mapping, Sequence
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from seawall.algorithms.quota import Dimension, QuotaDecision, QuotaLimits, QuotaScope, format_reset
from seawall.core.compose import Handler
from seawall.core.errors import GatewayError, RateLimited
from seawall.core.streams import after_stream
from seawall.core.types import Principal, Request, Response
from seawall.env import Clock
from seawall.policies.route import work_units

__all__ = ["Decided", "QuotaPolicy", "QuotaService", "QuotaTable", "QuotaTicket", "rate_headers"]

Partial = Mapping[str, int | None]  # only the limits a config entry sets; None: explicitly unlimited

_CODES = {
    Dimension.CONCURRENCY: ("concurrent_requests_exceeded", "quota_concurrency", "concurrent requests"),
    Dimension.REQUESTS: ("requests_per_min_exceeded", "quota_requests", "requests per minute"),
    Dimension.TOKENS: ("tokens_per_min_exceeded", "quota_tokens", "tokens per minute"),
    Dimension.DAILY_TOKENS: ("daily_token_budget_exceeded", "quota_daily_tokens", "tokens per day"),
}


class Decided(enum.Enum):
    """Where a ticket's decision was made (and so how it is settled)."""

    LEASE = "lease"  # in-process, from a lease or a snapshot: settled in-process, synced later
    REDIS = "redis"  # on Redis, one call
    FALLBACK = "fallback"  # in-process counters at 1/N (no Redis, or Redis unreachable)


@dataclass(slots=True)
class QuotaTicket:
    """What was charged, where, so that the end of the request settles the same counters."""

    decision: QuotaDecision
    scopes: Sequence[QuotaScope]
    tokens: int
    acquired_s: float  # unix seconds (Redis's clock for tickets decided there)
    lease_id: str | None = None  # a concurrency lease held on Redis, released when the request ends
    decided: Decided = Decided.FALLBACK
    local_scopes: Sequence[QuotaScope] | None = None  # the 1/N scopes charged by a fallback decision


class QuotaService(Protocol):
    """What the policy needs from the quota store (``seawall.edges.quota.QuotaService``): charge at
    admission, settle with the actual usage when the request ends. Policies import no edge."""

    async def acquire(self, scopes: Sequence[QuotaScope], tokens: int, lease_ttl_s: float) -> QuotaTicket: ...
    async def settle(self, ticket: QuotaTicket, actual_tokens: int | None) -> None: ...
    def settle_later(self, ticket: QuotaTicket, actual_tokens: int | None) -> None: ...


S = TypeVar("S", bound=QuotaService)


def _merge(*layers: Partial | None) -> QuotaLimits:
    merged: dict[str, int | None] = {}
    for layer in layers:
        if layer:
            merged.update(layer)
    return QuotaLimits(**merged)


class QuotaTable:
    """The limits of a key and of its tenant: tier defaults, overridden per tenant, then per key.

    ``tiers``/``tenants`` map a name to ``{"key": Partial, "tenant": Partial}`` (limits of each
    key, limits of the tenant as a whole); ``keys`` maps a key id to its own ``Partial``.
    Resolved once per (key, tenant, tier) and cached.
    """

    def __init__(self, tiers: Mapping[str, Mapping[str, Partial]], tenants: Mapping[str, Mapping[str, Partial]],
                 keys: Mapping[str, Partial]) -> None:
        self.tiers = tiers
        self.tenants = tenants
        self.keys = keys
        self._cache: dict[tuple[str, str, str], tuple[QuotaScope, ...]] = {}

    @property
    def empty(self) -> bool:
        parts = [*self.tiers.values(), *self.tenants.values()]
        return not self.keys and not any(v for p in parts for v in p.values())

    def scopes(self, p: Principal) -> tuple[QuotaScope, ...]:
        cache_key = (p.key_id, p.tenant, p.tier)
        found = self._cache.get(cache_key)
        if found is not None:
            return found
        tier, tenant = self.tiers.get(p.tier, {}), self.tenants.get(p.tenant, {})
        out = []
        key_limits = _merge(tier.get("key"), tenant.get("key"), self.keys.get(p.key_id))
        if not key_limits.empty:
            out.append(QuotaScope("key", p.key_id, p.tenant, key_limits))
        tenant_limits = _merge(tier.get("tenant"), tenant.get("tenant"))
        if not tenant_limits.empty:
            out.append(QuotaScope("tenant", p.tenant, p.tenant, tenant_limits))
        if len(self._cache) > 100_000:
            self._cache.clear()
        found = self._cache[cache_key] = tuple(out)
        return found


def rate_headers(d: QuotaDecision) -> list[tuple[str, str]]:
    headers: list[tuple[str, str]] = []
    for name, state in (("requests", d.requests), ("tokens", d.tokens)):
        if state is not None:
            headers += [(f"x-ratelimit-limit-{name}", str(state.limit)),
                        (f"x-ratelimit-remaining-{name}", str(state.remaining)),
                        (f"x-ratelimit-reset-{name}", format_reset(state.reset_s))]
    return headers


def quota_error(d: QuotaDecision, tokens: int, headers: list[tuple[str, str]]) -> RateLimited:
    assert d.refused is not None and d.scope is not None
    code, reason, what = _CODES[d.refused]
    who = f"{d.scope.kind} {d.scope.id}"
    if math.isinf(d.retry_after_s):
        return RateLimited(
            f"This request needs an estimated {tokens} tokens, more than the {what} quota of {who} "
            f"({d.limit}) allows at all; lower max_tokens or shorten the prompt.",
            code=code, reason=reason, should_retry=False, headers=headers)
    daily = d.refused is Dimension.DAILY_TOKENS
    return RateLimited(
        f"Quota reached for {who}: {what} limit {d.limit}. "
        + ("The budget renews at 00:00 UTC." if daily else f"Try again in {format_reset(d.retry_after_s)}."),
        code=code, reason=reason, retry_after_s=d.retry_after_s, should_retry=False if daily else None,
        headers=headers)


class QuotaPolicy(Generic[S]):
    def __init__(self, table: QuotaTable, service: S, *, clock: Clock) -> None:
        self.table = table
        self.service = service
        self.clock = clock

    async def __call__(self, request: Request, next_handler: Handler) -> Response:
        principal = request.principal
        scopes = () if principal.admin else self.table.scopes(principal)
        if not scopes:
            return await next_handler(request)
        tokens = int(work_units(request)) if any(s.limits.counts_tokens for s in scopes) else 0
        ticket = await self.service.acquire(scopes, tokens, max(0.0, request.deadline - self.clock.now()))
        headers = rate_headers(ticket.decision)
        if not ticket.decision.allowed:
            raise quota_error(ticket.decision, tokens, headers)
        try:
            response = await next_handler(request)
        except GatewayError as exc:
            self.service.settle_later(ticket, 0)  # no answer, nothing generated
            exc.headers = [*(exc.headers or []), *headers]
            raise
        except BaseException:
            self.service.settle_later(ticket, None)  # cancelled: usage unknown, the estimate stands
            raise
        response.headers.extend(headers)
        if response.stream is None:
            await self.service.settle(ticket, _actual(response))
            return response
        response.stream = self._settle_after(response, response.stream, ticket)
        return response

    def _settle_after(self, response: Response, inner: AsyncIterator[bytes], ticket: QuotaTicket
                      ) -> AsyncIterator[bytes]:
        def settle(finished: bool) -> Awaitable[None] | None:
            if finished:
                return self.service.settle(ticket, _actual(response))
            self.service.settle_later(ticket, _actual(response))
            return None

        return after_stream(inner, settle)


def _actual(response: Response) -> int | None:
    return response.usage.total_tokens if response.usage is not None else None
