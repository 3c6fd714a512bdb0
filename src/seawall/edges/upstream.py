"""The upstream edge; the adapters live in :mod:`seawall.edges.upstreams`, re-exported here."""

from __future__ import annotations

from seawall.edges.upstreams import (
    ANTHROPIC_RATE_LIMITS,
    ANTHROPIC_VERSION,
    OPENAI_RATE_LIMITS,
    PROVIDERS,
    AnthropicUpstream,
    OpenAIUpstream,
    Upstream,
    UpstreamRejected,
    UpstreamSettings,
    headroom_from,
    make_upstream,
    retry_after_from,
    status_error,
)

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
