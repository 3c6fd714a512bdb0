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
    seed: int | None = None
    models: tuple[str, ...] = ("mock-chat", "mock-embed")
    embedding_dimensions: int = 8

    def __post_init__(self) -> None:
        for name in (*_SECONDS, "tokens_per_s", *_RATES):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"'{name}' must be a finite number >= 0, got {value!r}")
        for name in _RATES:
            if getattr(self, name) > 1:
                raise ValueError(f"'{name}' must be at most 1, got {getattr(self, name)!r}")
        if sum(getattr(self, name) for name in _RATES) > 1 + 1e-9:
            raise ValueError("'error_rate' + 'reset_rate' + 'stall_rate' must be at most 1")
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


_FLOATS = frozenset({*_SECONDS, *_RATES, "tokens_per_s"})
_INTS = frozenset({"completion_tokens", "fault_after_chunks", "embedding_dimensions"})
_OPTIONAL_INTS = frozenset({"max_in_flight", "seed"})


def _coerce(name: str, value: Any) -> Any:
    if name in _FLOATS:
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
