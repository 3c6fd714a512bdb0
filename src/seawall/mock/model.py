"""The mock's pure behaviour model: which fault a request gets, when each token is due, what it says.

No I/O and no clock here: the server in :mod:`seawall.mock.app` samples the clock and the RNG and
asks these functions what to do, so the latency/token model is tested without sockets or sleeps.
"""

from __future__ import annotations

import base64
import enum
import functools
import hashlib
import math
import sys
from array import array
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from seawall.mock.config import MockConfig
from seawall.mock.servers import BatchingServer, HostedServer, SlotsServer

__all__ = [
    "ChatPlan",
    "Fault",
    "Overrides",
    "choose_fault",
    "content_text",
    "embedding",
    "embedding_inputs",
    "encode_embedding",
    "input_tokens",
    "parse_overrides",
    "plan_chat",
    "retry_after_s",
    "server_for",
    "token_text",
]

# Tolerance for "this token is due now": sleeping exactly until a due time must not lose a token
# to floating-point rounding.
_DUE_EPSILON_S = 1e-9


class Fault(enum.StrEnum):
    ERROR = "error"  # 500 with an OpenAI error body
    RESET = "reset"  # connection aborted
    STALL = "stall"  # a pause of stall_s
    RATE_LIMIT = "429"  # 429 as if at capacity
    OVERLOADED = "529"  # Anthropic's 529 overloaded_error: the whole service is short of capacity


@dataclass(frozen=True, slots=True)
class Overrides:
    """Per-request test knobs from ``x-mock-*`` headers or the body's ``"mock"`` object."""

    latency_s: float | None = None
    fault: Fault | None = None
    completion_tokens: int | None = None


NO_OVERRIDES = Overrides()
_BODY_KEYS = frozenset({"latency_s", "fault", "completion_tokens"})


def parse_overrides(latency_header: str | None, fault_header: str | None, body_mock: Any) -> Overrides:
    """Merge header and body overrides (the body wins); ``ValueError`` says which one is bad.

    Headers are ``x-mock-latency-s`` and ``x-mock-fault``; the body form
    ``"mock": {"latency_s": .., "fault": .., "completion_tokens": ..}`` exists because a gateway
    forwards unknown body fields but not necessarily unknown headers.
    """
    if latency_header is None and fault_header is None and body_mock is None:
        return NO_OVERRIDES
    latency_s: float | None = None
    fault: Fault | None = None
    completion_tokens: int | None = None
    if latency_header is not None:
        try:
            latency_s = _seconds(float(latency_header), "x-mock-latency-s")
        except ValueError:
            raise ValueError(f"'x-mock-latency-s' must be a number >= 0, got {latency_header!r}") from None
    if fault_header is not None:
        fault = _fault(fault_header, "x-mock-fault")
    if body_mock is not None:
        if not isinstance(body_mock, dict):
            raise ValueError("'mock' must be an object")
        unknown = set(body_mock) - _BODY_KEYS
        if unknown:
            raise ValueError(f"unknown 'mock' fields {sorted(unknown)}; known: {sorted(_BODY_KEYS)}")
        if body_mock.get("latency_s") is not None:
            value = body_mock["latency_s"]
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError("'mock.latency_s' must be a number >= 0")
            latency_s = _seconds(float(value), "mock.latency_s")
        if body_mock.get("fault") is not None:
            fault = _fault(body_mock["fault"], "mock.fault")
        if body_mock.get("completion_tokens") is not None:
            value = body_mock["completion_tokens"]
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError("'mock.completion_tokens' must be an integer >= 0")
            completion_tokens = value
    return Overrides(latency_s=latency_s, fault=fault, completion_tokens=completion_tokens)


def _seconds(value: float, name: str) -> float:
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"'{name}' must be a number >= 0")
    return value


def _fault(value: Any, name: str) -> Fault:
    try:
        return Fault(str(value))
    except ValueError:
        raise ValueError(f"'{name}' must be one of {[f.value for f in Fault]}, got {value!r}") from None


def choose_fault(config: MockConfig, sample: float) -> Fault | None:
    """Map one uniform ``sample`` in [0, 1) to a fault: the rates partition the unit interval."""
    edge = config.error_rate
    if sample < edge:
        return Fault.ERROR
    edge += config.reset_rate
    if sample < edge:
        return Fault.RESET
    edge += config.stall_rate
    if sample < edge:
        return Fault.STALL
    return None


@dataclass(frozen=True, slots=True)
class ChatPlan:
    """When each token of one completion is due, relative to the request's arrival (seconds).

    Token ``i`` (0-based) is due at ``first_token_s + i * token_interval_s``: the base latency
    models queueing + prefill, the interval models decode speed.
    """

    first_token_s: float
    token_interval_s: float
    completion_tokens: int
    finish_reason: str

    @property
    def total_s(self) -> float:
        """When the last token is due, i.e. how long a non-streaming request takes."""
        return self.first_token_s + max(self.completion_tokens - 1, 0) * self.token_interval_s

    def tokens_due(self, since_first_s: float) -> int:
        """How many tokens are due ``since_first_s`` seconds after the first token's due time."""
        if since_first_s < -_DUE_EPSILON_S:
            return 0
        if self.token_interval_s <= 0:
            return self.completion_tokens
        due = math.floor((since_first_s + _DUE_EPSILON_S) / self.token_interval_s) + 1
        return min(self.completion_tokens, due)

    def next_due_s(self, index: int) -> float:
        """Offset of token ``index`` from the first token's due time."""
        return index * self.token_interval_s


def plan_chat(config: MockConfig, max_tokens: int | None, overrides: Overrides = NO_OVERRIDES) -> ChatPlan:
    """The token count, finish reason and timing of one chat completion."""
    wanted = config.completion_tokens if overrides.completion_tokens is None else overrides.completion_tokens
    if max_tokens is not None and max_tokens < wanted:
        tokens, finish_reason = max_tokens, "length"
    else:
        tokens, finish_reason = wanted, "stop"
    base_s = config.base_latency_s if overrides.latency_s is None else overrides.latency_s
    interval_s = 1.0 / config.tokens_per_s if config.tokens_per_s > 0 else 0.0
    return ChatPlan(base_s + config.first_token_delay_s, interval_s, tokens, finish_reason)


def retry_after_s(config: MockConfig) -> float:
    """The 429 hint: about one default request's service time, when a slot should be free again."""
    interval_s = 1.0 / config.tokens_per_s if config.tokens_per_s > 0 else 0.0
    return (
        config.base_latency_s + config.first_token_delay_s + max(config.completion_tokens - 1, 0) * interval_s
    )


def token_text(index: int) -> str:
    """The text of token ``index``: words ``tok0 tok1 ...``, one token per word."""
    return f"tok{index}" if index == 0 else f" tok{index}"


@functools.lru_cache(maxsize=256)
def content_text(tokens: int) -> str:
    """The whole completion of ``tokens`` tokens; equals the streamed pieces joined."""
    return "".join(token_text(i) for i in range(tokens))


def embedding_inputs(value: Any) -> list[Any]:
    """Split an embeddings ``input`` into items: a string, a token array, or an array of either."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and value and all(isinstance(v, int) for v in value):
        return [value]
    return list(value)


def input_tokens(item: Any) -> int:
    """Prompt tokens of one embeddings item (token arrays count exactly, text ~4 bytes a token)."""
    if isinstance(item, list):
        return len(item)
    if isinstance(item, str):
        return max(1, len(item.encode()) // 4)
    return 1


def embedding(item: Any, dimensions: int) -> list[float]:
    """A deterministic unit vector from a hash of ``item``: equal inputs embed equally."""
    key = item.encode() if isinstance(item, str) else repr(item).encode()
    raw = array("I", hashlib.shake_256(key).digest(4 * dimensions))
    values = [v / 2147483648.0 - 1.0 for v in raw]
    norm = math.sqrt(sum(v * v for v in values)) or 1.0
    return [v / norm for v in values]


def encode_embedding(vector: list[float], encoding_format: str | None) -> list[float] | str:
    """``float`` gives the list; ``base64`` gives little-endian float32 bytes, as OpenAI sends."""
    if encoding_format == "base64":
        packed = array("f", vector)
        if packed.itemsize != 4:  # pragma: no cover - float is 4 bytes on every supported platform
            raise RuntimeError("array('f') is not float32 here")
        if sys.byteorder == "big":  # pragma: no cover
            packed.byteswap()
        return base64.b64encode(packed.tobytes()).decode()
    return vector


Server = SlotsServer | BatchingServer | HostedServer


def _slots(config: MockConfig, current: Server | None) -> Server:
    first_s = config.base_latency_s + config.first_token_delay_s
    interval_s = 1.0 / config.tokens_per_s if config.tokens_per_s > 0 else 0.0
    server = current if isinstance(current, SlotsServer) else SlotsServer(
        config.max_in_flight, first_s, interval_s, retry_after_s(config))
    server.capacity = config.max_in_flight
    server.first_s = first_s
    server.interval_s = interval_s
    server.retry_s = retry_after_s(config)
    return server


def _batching(config: MockConfig, current: Server | None) -> Server:
    server = current if isinstance(current, BatchingServer) else BatchingServer(
        max_num_seqs=config.max_num_seqs, tokens_per_s=config.tokens_per_s)
    server.max_num_seqs = config.max_num_seqs
    server.tokens_per_s = config.tokens_per_s
    server.overhead_s = config.base_latency_s + config.first_token_delay_s
    server.prefill_tokens_per_s = config.prefill_tokens_per_s
    server.batch_slowdown = config.batch_slowdown
    server.kv_cache_tokens = config.kv_cache_tokens
    return server


def _hosted(config: MockConfig, current: Server | None) -> Server:
    first_s = config.base_latency_s + config.first_token_delay_s
    interval_s = 1.0 / config.tokens_per_s if config.tokens_per_s > 0 else 0.0
    if (isinstance(current, HostedServer) and current.requests_per_minute == config.requests_per_minute
            and current.tokens_per_minute == config.tokens_per_minute):
        server = current
    else:
        server = HostedServer(requests_per_minute=config.requests_per_minute,
                              tokens_per_minute=config.tokens_per_minute, first_s=first_s,
                              interval_s=interval_s, soft_concurrency=config.soft_concurrency)
    server.first_s = first_s
    server.interval_s = interval_s
    server.soft_concurrency = config.soft_concurrency
    server.overloaded_rate = config.overloaded_rate
    return server


#: How a server takes load (``behaviour`` in the mock's config and in a scenario's deployment) ->
#: the model's builder ``(config, current) -> server``: a new behaviour is one model in
#: :mod:`seawall.mock.servers` and one line here. The mock and the simulator both build from it.
BEHAVIOURS: dict[str, Callable[[MockConfig, Server | None], Server]] = {
    "slots": _slots,  # fixed slots, 429 beyond them (the seed's)
    "batching": _batching,  # continuous batching: vLLM, TGI, SGLang
    "hosted": _hosted,  # a hosted provider: OpenAI, Anthropic
}


def server_for(config: MockConfig, current: Server | None = None) -> Server:
    """The behaviour model (:mod:`seawall.mock.servers`) ``config`` asks for. ``current`` of the same
    behaviour is updated in place, so the requests it holds (and its rate-limit buckets) carry over
    a reconfiguration; another behaviour starts a new model and the old one drains."""
    server = BEHAVIOURS[config.behaviour](config, current)
    server.set_factor(config.slowdown)
    return server
