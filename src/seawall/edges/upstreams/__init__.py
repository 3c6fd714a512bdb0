"""Upstream adapters: one per provider wire format, one contract (see :mod:`.base`).

========== ======================================= ==========================================
provider   adapter                                 client API served
========== ======================================= ==========================================
openai     :class:`OpenAIUpstream`                 OpenAI (forwarded), Anthropic (translated)
anthropic  :class:`AnthropicUpstream`              Anthropic (forwarded), OpenAI (translated)
mock       :class:`OpenAIUpstream`                 the simulated upstream speaks OpenAI
========== ======================================= ==========================================
"""

from __future__ import annotations

from seawall.edges.upstreams.anthropic import ANTHROPIC_VERSION, AnthropicUpstream
from seawall.edges.upstreams.base import (
    ANTHROPIC_RATE_LIMITS,
    OPENAI_RATE_LIMITS,
    Upstream,
    UpstreamRejected,
    UpstreamSettings,
    headroom_from,
    retry_after_from,
    status_error,
)
from seawall.edges.upstreams.openai import OpenAIUpstream
from seawall.env import Clock

__all__ = [
    "ANTHROPIC_RATE_LIMITS",
    "ANTHROPIC_VERSION",
    "OPENAI_RATE_LIMITS",
    "PROVIDERS",
    "AnthropicUpstream",
    "OpenAIUpstream",
    "Upstream",
    "UpstreamRejected",
    "UpstreamSettings",
    "headroom_from",
    "make_upstream",
    "retry_after_from",
    "status_error",
]

_ADAPTERS: dict[str, type[OpenAIUpstream] | type[AnthropicUpstream]] = {
    "openai": OpenAIUpstream,
    "anthropic": AnthropicUpstream,
    "mock": OpenAIUpstream,
}
#: The provider names :func:`make_upstream` accepts.
PROVIDERS = frozenset(_ADAPTERS)


def make_upstream(provider: str, settings: UpstreamSettings, *, clock: Clock) -> Upstream:
    """The adapter for ``provider`` (one of :data:`PROVIDERS`); ``ValueError`` for any other."""
    adapter = _ADAPTERS.get(provider)
    if adapter is None:
        raise ValueError(f"unknown upstream provider {provider!r}; known: {sorted(PROVIDERS)}")
    return adapter(settings, clock=clock)
