"""Configuration of the simulated upstream: its speed, its capacity and the faults it injects.

One frozen :class:`MockConfig` is live at a time; ``POST /mock/config`` swaps in a validated copy
with :meth:`MockConfig.with_changes`, so a request in progress keeps the config it started with.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["MockConfig"]

_RATES = ("error_rate", "reset_rate", "stall_rate")
_NON_NEGATIVE = ("prefill_tokens_per_s", "batch_slowdown", "overloaded_rate", "slowdown")
_SECONDS = ("base_latency_s", "first_token_delay_s", "stall_s")


@dataclass(frozen=True, slots=True)
class MockConfig:
    """How the mock behaves; every duration in seconds, every rate a fraction of requests in [0, 1].

    - ``base_latency_s``: wait before the first token (or before an error / reset), default 20 ms.
    - ``first_token_delay_s``: extra wait added to the base latency, to model slow prefill.
    - ``tokens_per_s``: generation speed after the first token; 0 means all tokens at once.
    - ``completion_tokens``: tokens generated per chat completion, capped by the request's
      ``max_tokens`` / ``max_completion_tokens`` (then ``finish_reason`` is ``"length"``).
    - ``max_in_flight``: chat + messages + embeddings requests served at once; beyond it a 429 with
      ``retry-after``. ``None`` is unlimited, 0 rejects everything. When set, every answer carries
      the provider's rate-limit headers (``x-ratelimit-*-requests`` on the OpenAI endpoints,
      ``anthropic-ratelimit-requests-*`` on ``/v1/messages``).
    - ``error_rate`` / ``reset_rate`` / ``stall_rate``: drawn once per request from one uniform
      sample, so they are exclusive and must sum to at most 1. An error is a 500 after the base
      latency; a reset aborts the connection (before any response, or after
      ``fault_after_chunks`` content chunks of a stream); a stall pauses for ``stall_s`` (mid-stream,
      or before a non-streaming response).
    - ``behaviour``: how the server takes load (:mod:`seawall.mock.servers`): ``slots`` (the
      above: ``max_in_flight`` at once, a 429 beyond), ``batching`` (vLLM-like continuous batching:
      ``max_num_seqs`` decode together at ``tokens_per_s`` alone, ``batch_slowdown`` times slower
      when full; prefill at ``prefill_tokens_per_s`` stalls the batch; ``kv_cache_tokens`` bounds
      admitted prompt plus output tokens; the rest waits, never a 429; ``/metrics`` in vLLM's names)
      or ``hosted`` (a provider: ``requests_per_minute`` / ``tokens_per_minute`` per API key, 429
      with ``retry-after`` and ``x-ratelimit-*``, enforced per second; latency times ``1 + (in_flight
      / soft_concurrency)^2``, at most 4; ``overloaded_rate`` of requests, more when loaded, get
      503, or 529 on ``/v1/messages``). ``base_latency_s`` + ``first_token_delay_s`` is the fixed part of the
      time to the first token in every behaviour.
    - ``slowdown``: every duration of the behaviour times this (a deployment gone slow).
    - ``seed``: seeds the fault draws so a run of requests is reproducible.
    - ``models``: what ``GET /v1/models`` lists; any model name is accepted on requests.
    - ``embedding_dimensions``: vector length when the request does not ask for ``dimensions``.
    """

    base_latency_s: float = 0.02
    first_token_delay_s: float = 0.0
    tokens_per_s: float = 200.0
    completion_tokens: int = 16
    max_in_flight: int | None = None
    error_rate: float = 0.0
    reset_rate: float = 0.0
    stall_rate: float = 0.0
    stall_s: float = 1.0
    fault_after_chunks: int = 3
    behaviour: str = "slots"
    max_num_seqs: int = 64
    prefill_tokens_per_s: float = 20000.0
    batch_slowdown: float = 2.0
    kv_cache_tokens: int | None = None
    requests_per_minute: float | None = None
    tokens_per_minute: float | None = None
    soft_concurrency: int = 256
    overloaded_rate: float = 0.0
    slowdown: float = 1.0
    seed: int | None = None
    models: tuple[str, ...] = ("mock-chat", "mock-embed")
    embedding_dimensions: int = 8

    def __post_init__(self) -> None:
        for name in (*_SECONDS, "tokens_per_s", *_RATES, *_NON_NEGATIVE):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"'{name}' must be a finite number >= 0, got {value!r}")
        for name in _RATES:
            if getattr(self, name) > 1:
                raise ValueError(f"'{name}' must be at most 1, got {getattr(self, name)!r}")
        if sum(getattr(self, name) for name in _RATES) > 1 + 1e-9:
            raise ValueError("'error_rate' + 'reset_rate' + 'stall_rate' must be at most 1")
        from seawall.mock.model import BEHAVIOURS  # the registry builds from this config

        if self.behaviour not in BEHAVIOURS:
            raise ValueError(f"'behaviour' must be one of {list(BEHAVIOURS)}, got {self.behaviour!r}")
        for name in ("max_num_seqs", "soft_concurrency"):
            if getattr(self, name) < 1:
                raise ValueError(f"'{name}' must be >= 1, got {getattr(self, name)}")
        for name in ("prefill_tokens_per_s", "slowdown"):
            if getattr(self, name) <= 0:
                raise ValueError(f"'{name}' must be > 0, got {getattr(self, name)!r}")
        if not math.isfinite(self.batch_slowdown) or self.batch_slowdown < 1:
            raise ValueError(f"'batch_slowdown' must be >= 1, got {self.batch_slowdown!r}")
        if self.overloaded_rate > 1:
            raise ValueError(f"'overloaded_rate' must be at most 1, got {self.overloaded_rate!r}")
        if self.kv_cache_tokens is not None and self.kv_cache_tokens < 1:
            raise ValueError(f"'kv_cache_tokens' must be >= 1 or null, got {self.kv_cache_tokens}")
        for name in ("requests_per_minute", "tokens_per_minute"):
            value = getattr(self, name)
            if value is not None and (not math.isfinite(value) or value <= 0):
                raise ValueError(f"'{name}' must be > 0 or null, got {value!r}")
        if self.behaviour == "batching" and self.tokens_per_s <= 0:
            raise ValueError("'tokens_per_s' must be > 0 when 'behaviour' is 'batching'")
        if self.completion_tokens < 0:
            raise ValueError(f"'completion_tokens' must be >= 0, got {self.completion_tokens}")
        if self.max_in_flight is not None and self.max_in_flight < 0:
            raise ValueError(f"'max_in_flight' must be >= 0 or null, got {self.max_in_flight}")
        if self.fault_after_chunks < 0:
            raise ValueError(f"'fault_after_chunks' must be >= 0, got {self.fault_after_chunks}")
        if not 1 <= self.embedding_dimensions <= 65536:
            raise ValueError(f"'embedding_dimensions' must be in 1..65536, got {self.embedding_dimensions}")
        if not self.models or not all(isinstance(m, str) and m for m in self.models):
            raise ValueError("'models' must be a non-empty list of non-empty strings")

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> MockConfig:
        """Build from JSON-like values (``ValueError`` names the first bad or unknown field)."""
        return cls().with_changes(values)

    def with_changes(self, changes: Mapping[str, Any]) -> MockConfig:
        """A copy with ``changes`` applied, type-checked as JSON values; unknown keys are errors."""
        known = {f.name: f for f in dataclasses.fields(self)}
        clean: dict[str, Any] = {}
        for name, value in changes.items():
            if name not in known:
                raise ValueError(f"unknown mock config field '{name}'; known: {sorted(known)}")
            clean[name] = _coerce(name, value)
        return dataclasses.replace(self, **clean)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready values, the shape ``POST /mock/config`` accepts back."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        out["models"] = list(self.models)
        return out


_FLOATS = frozenset({*_SECONDS, *_RATES, *_NON_NEGATIVE, "tokens_per_s"})
_OPTIONAL_FLOATS = frozenset({"requests_per_minute", "tokens_per_minute"})
_INTS = frozenset({"completion_tokens", "fault_after_chunks", "embedding_dimensions", "max_num_seqs",
                   "soft_concurrency"})
_OPTIONAL_INTS = frozenset({"max_in_flight", "seed", "kv_cache_tokens"})


def _coerce(name: str, value: Any) -> Any:
    if name == "behaviour":
        if not isinstance(value, str):
            raise ValueError(f"'behaviour' must be a string, got {value!r}")
        return value
    if name in _FLOATS or name in _OPTIONAL_FLOATS:
        if value is None and name in _OPTIONAL_FLOATS:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"'{name}' must be a number, got {value!r}")
        return float(value)
    if name in _INTS or name in _OPTIONAL_INTS:
        if value is None and name in _OPTIONAL_INTS:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"'{name}' must be an integer, got {value!r}")
        return value
    if name == "models":
        if not isinstance(value, list | tuple) or not all(isinstance(m, str) for m in value):
            raise ValueError(f"'models' must be a list of strings, got {value!r}")
        return tuple(value)
    raise AssertionError(f"no coercion for field {name}")  # pragma: no cover - fields are fixed
