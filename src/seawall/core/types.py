"""Typed request, response and principal shared by every layer.

``Request`` holds the immutable wire payload (the raw body and a lazily parsed view of it) and a
small mutable context that policies fill in as the request moves inward (who is calling, at which
criticality, which deployments were tried). The body is parsed on first use so that policies which
decide from headers alone (auth, quota, tier-wide shedding) can reject before any JSON is parsed.
"""

from __future__ import annotations

import enum
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from seawall.algorithms.pacing import RateLimitReport

__all__ = [
    "Criticality",
    "Operation",
    "Payload",
    "Principal",
    "Request",
    "RequestContext",
    "Response",
    "Usage",
]


class Criticality(enum.IntEnum):
    """How much a request matters when capacity is short; higher survives longer."""

    SHEDDABLE = 0
    SHEDDABLE_PLUS = 1
    CRITICAL = 2
    CRITICAL_PLUS = 3

    @classmethod
    def parse(cls, name: str) -> Criticality:
        return cls[name.upper()]

    @property
    def label(self) -> str:
        return self.name.lower()


class Operation(enum.Enum):
    CHAT = "chat"
    EMBEDDINGS = "embeddings"
    MODERATIONS = "moderations"
    MESSAGES = "messages"
    COMPLETIONS = "completions"  # legacy text completions, passed through to OpenAI-compatible upstreams
    RESPONSES = "responses"  # OpenAI's Responses API, served as chat completions (edges/responses.py)
    COUNT_TOKENS = "count_tokens"  # answered at the edge (edges/count_tokens.py), never routed


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling, as resolved by auth: never carries the secret itself."""

    key_id: str
    tenant: str
    tier: str
    criticality: Criticality
    models: frozenset[str] | None = None  # None: every model
    source: str = "key"  # "key" or "jwt"
    admin: bool = False

    def may_use(self, model: str) -> bool:
        return self.models is None or model in self.models


@dataclass(frozen=True, slots=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True, slots=True)
class Payload:
    """The parts of a request body that the gateway itself reads; ``body`` is the full JSON object."""

    model: str
    body: dict[str, Any]
    stream: bool = False
    include_usage: bool = False
    max_tokens: int | None = None
    estimated_prompt_tokens: int = 0
    service_tier: str | None = None


@dataclass(slots=True)
class RequestContext:
    """Mutable facts learned while the request moves through the stack (one per request)."""

    principal: Principal | None = None
    criticality: Criticality | None = None
    deployments_tried: list[str] = field(default_factory=list)
    attempts: int = 0  # upstream sends, all rounds together
    plan: Any = None  # the request's one retry plan (algorithms/plan.py SendPlan), made by the router
    reason: str | None = None  # why it was shed or failed, for the ledger and metrics
    ttft_s: float | None = None  # streams: seconds from receipt to the first event
    guard: Any = None  # the guard's decisions (policies/guard.py GuardRecord), for the ledger and metrics


class Request:
    """One client request: immutable wire data plus a per-request context."""

    __slots__ = (
        "_parse",
        "_payload",
        "api",
        "client_addr",
        "ctx",
        "deadline",
        "headers",
        "id",
        "operation",
        "raw",
        "received_at",
    )

    def __init__(
        self,
        *,
        id: str,
        api: str,
        operation: Operation,
        raw: bytes,
        headers: Mapping[str, str],
        client_addr: str,
        received_at: float,
        deadline: float,
        parse: Callable[[bytes], Payload] | None = None,
        payload: Payload | None = None,
    ) -> None:
        self.id = id
        self.api = api
        self.operation = operation
        self.raw = raw
        self.headers = headers
        self.client_addr = client_addr
        self.received_at = received_at
        self.deadline = deadline
        self._parse = parse
        self._payload = payload
        self.ctx = RequestContext()

    @property
    def payload(self) -> Payload:
        """The parsed body; raises ``InvalidRequest`` (400) on the first access if it is malformed."""
        if self._payload is None:
            if self._parse is None:
                raise RuntimeError("request has neither a payload nor a parser")
            self._payload = self._parse(self.raw)
        return self._payload

    @property
    def parsed_payload(self) -> Payload | None:
        """The payload if something has parsed it already, else None: never parses (for observers of
        requests refused before their body was read, which must not pay for parsing it)."""
        return self._payload

    @property
    def principal(self) -> Principal:
        p = self.ctx.principal
        if p is None:
            raise RuntimeError("principal read before auth ran")
        return p


class Response:
    """What a handler returns: a complete body or an async stream of already-framed bytes."""

    __slots__ = ("body", "deployment", "headers", "headroom", "rate_limits", "status", "stream", "usage")

    def __init__(
        self,
        status: int,
        body: bytes = b"",
        *,
        headers: list[tuple[str, str]] | None = None,
        stream: AsyncIterator[bytes] | None = None,
        usage: Usage | None = None,
        deployment: str | None = None,
    ) -> None:
        self.status = status
        self.body = body
        self.headers = headers if headers is not None else []
        self.stream = stream
        self.usage = usage
        self.deployment = deployment
        # Fraction (0..1) of the upstream's rate limit still left, from its rate-limit headers.
        self.headroom: float | None = None
        # What the upstream's rate-limit headers said (seawall.algorithms.pacing.RateLimitReport).
        self.rate_limits: RateLimitReport | None = None
