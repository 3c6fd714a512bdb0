"""OpenAI wire format: request validation, error bodies, stream chunks.

Validation reads only the fields the gateway acts on and names the offending field in the error
(``param``), the way OpenAI does; every other field is forwarded untouched.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgspec

from seawall.core.errors import GatewayError, InvalidRequest
from seawall.core.types import Payload

__all__ = [
    "BODY_LIMITS",
    "SERVICE_TIERS",
    "SYSTEM_FINGERPRINT",
    "BodyLimits",
    "chunk",
    "completion",
    "error_body",
    "error_event",
    "parse_chat",
    "parse_embeddings",
]

SERVICE_TIERS = frozenset({"auto", "default", "flex", "priority", "scale"})
# What bodies the gateway builds itself report: OpenAI's schema types system_fingerprint as a
# string, and a null breaks strict clients; stable, so it says "these came from seawall".
SYSTEM_FINGERPRINT = "fp_seawall"
_ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})
_decode = msgspec.json.decode
_encode = msgspec.json.encode
MAX_N = 128  # OpenAI's own bound on 'n'


@dataclass(frozen=True, slots=True)
class BodyLimits:
    """Bounds on what a request body may ask for (``server.max_messages``,
    ``server.max_output_tokens``): beyond them a body is refused with 400 naming the field, before it
    costs a quota estimate or an upstream call. Nesting depth is bounded by the decoder (about 900
    levels: deeper is refused, never a RecursionError)."""

    max_messages: int = 100_000  # Anthropic's documented bound on one request
    max_output_tokens: int = 1_048_576  # max_tokens, max_completion_tokens, and max_tokens x n


BODY_LIMITS = BodyLimits()


def load_json_object(raw: bytes) -> dict[str, Any]:
    if not raw:
        raise InvalidRequest("Request body is empty; expected a JSON object.", code="invalid_json")
    try:
        body = _decode(raw)
    except UnicodeDecodeError:
        raise InvalidRequest("Request body is not valid UTF-8.", code="invalid_json") from None
    except RecursionError:  # msgspec recurses per level: the interpreter's limit is the depth bound
        raise InvalidRequest("Request body is nested too deeply.", code="invalid_json") from None
    except msgspec.DecodeError as exc:
        detail = str(exc)
        if "UTF-8" in detail or "utf-8" in detail:
            raise InvalidRequest("Request body is not valid UTF-8.", code="invalid_json") from None
        nul = raw.find(b"\x00")
        if nul >= 0:
            raise InvalidRequest(f"Request body contains a NUL byte (at byte {nul}); JSON strings must escape "
                                 "control characters.", code="invalid_json") from None
        raise InvalidRequest(f"Request body is not valid JSON: {detail}", code="invalid_json") from None
    if not isinstance(body, dict):
        raise InvalidRequest("Request body must be a JSON object.", code="invalid_json")
    return body


def _model(body: dict[str, Any]) -> str:
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise InvalidRequest("'model' is required and must be a non-empty string.", param="model")
    return model


def _opt_int(body: dict[str, Any], name: str, minimum: int, maximum: int) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= maximum:
        raise InvalidRequest(f"'{name}' must be an integer from {minimum} to {maximum}.", param=name)
    return value


def _opt_bool(body: dict[str, Any], name: str) -> bool:
    value = body.get(name, False)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise InvalidRequest(f"'{name}' must be a boolean.", param=name)
    return value


def _service_tier(body: dict[str, Any]) -> str | None:
    tier = body.get("service_tier")
    if tier is None:
        return None
    if not isinstance(tier, str) or tier not in SERVICE_TIERS:  # a list is unhashable: a TypeError
        raise InvalidRequest(
            f"'service_tier' must be one of {sorted(SERVICE_TIERS)}.", param="service_tier"
        )
    return str(tier)


def _check_messages(messages: Any, limit: int) -> None:
    if not isinstance(messages, list) or not messages:
        raise InvalidRequest("'messages' must be a non-empty array.", param="messages")
    if len(messages) > limit:
        raise InvalidRequest(f"'messages' has {len(messages)} items; at most {limit} are accepted.",
                             param="messages")
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise InvalidRequest(f"'messages[{i}]' must be an object.", param=f"messages[{i}]")
        role = message.get("role")
        if not isinstance(role, str) or role not in _ROLES:
            raise InvalidRequest(
                f"'messages[{i}].role' must be one of {sorted(_ROLES)}.", param=f"messages[{i}].role"
            )
        content = message.get("content")
        if content is not None and not isinstance(content, str | list):
            raise InvalidRequest(
                f"'messages[{i}].content' must be a string or an array of parts.",
                param=f"messages[{i}].content",
            )


def parse_chat(raw: bytes, limits: BodyLimits = BODY_LIMITS) -> Payload:
    """Validate a chat completions body; raise :class:`InvalidRequest` naming the field."""
    body = load_json_object(raw)
    model = _model(body)
    _check_messages(body.get("messages"), limits.max_messages)
    stream = _opt_bool(body, "stream")
    include_usage = False
    options = body.get("stream_options")
    if options is not None:
        if not isinstance(options, dict):
            raise InvalidRequest("'stream_options' must be an object.", param="stream_options")
        if not stream:
            raise InvalidRequest(
                "'stream_options' is only allowed when 'stream' is true.", param="stream_options"
            )
        value = options.get("include_usage", False)
        if not isinstance(value, bool):
            raise InvalidRequest(
                "'stream_options.include_usage' must be a boolean.", param="stream_options.include_usage"
            )
        include_usage = value
    max_tokens = _opt_int(body, "max_completion_tokens", 1, limits.max_output_tokens)
    if max_tokens is None:
        max_tokens = _opt_int(body, "max_tokens", 1, limits.max_output_tokens)
    n = _opt_int(body, "n", 1, MAX_N)
    if max_tokens is not None and n is not None and max_tokens * n > limits.max_output_tokens:
        raise InvalidRequest(f"'max_tokens' x 'n' must be at most {limits.max_output_tokens}.", param="n")
    temperature = body.get("temperature")
    if temperature is not None and (
        isinstance(temperature, bool) or not isinstance(temperature, int | float) or not 0 <= temperature <= 2
    ):
        raise InvalidRequest("'temperature' must be a number between 0 and 2.", param="temperature")
    return Payload(
        model=model,
        body=body,
        stream=stream,
        include_usage=include_usage,
        max_tokens=max_tokens if n is None else (max_tokens or 0) * n or None,
        estimated_prompt_tokens=estimate_tokens(raw),
        service_tier=_service_tier(body),
    )


def parse_embeddings(raw: bytes) -> Payload:
    body = load_json_object(raw)
    model = _model(body)
    value = body.get("input")
    if isinstance(value, str):
        ok = True
    elif isinstance(value, list) and value:
        ok = all(isinstance(v, str | int) or isinstance(v, list) for v in value)
    else:
        ok = False
    if not ok:
        raise InvalidRequest(
            "'input' must be a string, an array of strings or an array of token arrays.", param="input"
        )
    encoding = body.get("encoding_format")
    if encoding is not None and encoding not in ("float", "base64"):
        raise InvalidRequest("'encoding_format' must be 'float' or 'base64'.", param="encoding_format")
    return Payload(model=model, body=body, estimated_prompt_tokens=estimate_tokens(raw))


def estimate_tokens(raw: bytes) -> int:
    """A cheap upper-ish estimate of prompt tokens (about 4 bytes of JSON per token)."""
    return max(1, len(raw) // 4)


class _ErrorDetail(msgspec.Struct, omit_defaults=False):
    message: str
    type: str
    param: str | None
    code: str | None


class _ErrorBody(msgspec.Struct):
    error: _ErrorDetail


def error_body(err: GatewayError) -> bytes:
    return _encode(_ErrorBody(_ErrorDetail(err.message, err.type, err.param, err.code)))


def error_event(err: GatewayError) -> bytes:
    """The SSE event that ends a stream which failed after it started (the SDKs raise on it)."""
    return b"data: " + error_body(err) + b"\n\n"


def chunk(
    *,
    id: str,
    created: int,
    model: str,
    content: str | None = None,
    role: str | None = None,
    finish_reason: str | None = None,
    usage: dict[str, int] | None = None,
    service_tier: str | None = None,
    no_choices: bool = False,
) -> bytes:
    """One ``chat.completion.chunk`` JSON object as OpenAI streams it."""
    out: dict[str, Any] = {
        "id": id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "system_fingerprint": SYSTEM_FINGERPRINT,
    }
    if service_tier is not None:
        out["service_tier"] = service_tier
    if no_choices:
        out["choices"] = []
    else:
        delta: dict[str, Any] = {}
        if role is not None:
            delta["role"] = role
        if content is not None:
            delta["content"] = content
        out["choices"] = [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}]
    out["usage"] = usage
    return _encode(out)


def completion(
    *,
    id: str,
    created: int,
    model: str,
    content: str,
    finish_reason: str,
    prompt_tokens: int,
    completion_tokens: int,
    service_tier: str | None = None,
) -> bytes:
    """One non-streaming ``chat.completion`` object."""
    out: dict[str, Any] = {
        "id": id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content, "refusal": None},
                "logprobs": None,
                "finish_reason": finish_reason,
            }
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
        "system_fingerprint": SYSTEM_FINGERPRINT,
    }
    if service_tier is not None:
        out["service_tier"] = service_tier
    return _encode(out)
