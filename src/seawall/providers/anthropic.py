"""Anthropic Messages wire format: request validation, error bodies, messages and stream events.

Validation reads only the fields the gateway acts on, plus the shape rules that Anthropic itself
enforces before any model runs, so a bad request is refused at the edge rather than after a queue
wait. Errors name the field as Anthropic does, with a dotted path (``messages.0.role``), both in
``param`` and at the start of the message. Every other field is forwarded untouched.

Stream builders return framed SSE events (``event:`` line, ``data:`` line, blank line) in the order
Anthropic sends them::

    message_start, content_block_start, ping, content_block_delta..., content_block_stop,
    [more blocks], message_delta (stop_reason, usage.output_tokens), message_stop

The per-token events are built by byte concatenation around an encoded string: they are the hot
path of every streamed response and their layout never varies.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import msgspec

from seawall.core.errors import GatewayError, InvalidRequest, Overloaded
from seawall.core.types import Payload
from seawall.providers.openai import BODY_LIMITS, BodyLimits, estimate_tokens, load_json_object

__all__ = [
    "MESSAGE_STOP",
    "OVERLOADED_STATUS",
    "PING",
    "ROLES",
    "STOP_REASONS",
    "content_block_start",
    "content_block_stop",
    "error_body",
    "error_event",
    "error_type",
    "input_json_delta",
    "message",
    "message_delta",
    "message_object",
    "message_start",
    "parse_messages",
    "status_for",
    "text_block_start",
    "text_delta",
    "text_stream",
    "tool_use_block_start",
]

ROLES = frozenset({"user", "assistant"})
STOP_REASONS = frozenset(
    {
        "end_turn",
        "max_tokens",
        "stop_sequence",
        "tool_use",
        "pause_turn",
        "refusal",
        "model_context_window_exceeded",
    }
)
_TOOL_CHOICES = frozenset({"auto", "any", "tool", "none"})
#: Anthropic's own status for ``overloaded_error``; the SDKs retry it like any 5xx.
OVERLOADED_STATUS = 529

_encode = msgspec.json.encode


# ---------------------------------------------------------------------------------------- requests


def _invalid(param: str, problem: str) -> InvalidRequest:
    return InvalidRequest(f"{param}: {problem}", param=param)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _check_blocks(blocks: list[Any], param: str) -> None:
    for j, block in enumerate(blocks):
        if not isinstance(block, dict) or not isinstance(block.get("type"), str):
            raise _invalid(f"{param}.{j}", "each content block must be an object with a string 'type'")
        if block["type"] == "text" and not isinstance(block.get("text"), str):
            raise _invalid(f"{param}.{j}.text", "must be a string")


def _check_messages(messages: Any, limit: int) -> None:
    if not isinstance(messages, list) or not messages:
        raise _invalid("messages", "must be a non-empty array")
    if len(messages) > limit:
        raise _invalid("messages", f"has {len(messages)} items; at most {limit} are accepted")
    for i, msg in enumerate(messages):
        if not isinstance(msg, dict):
            raise _invalid(f"messages.{i}", "must be an object")
        if not isinstance(msg.get("role"), str) or msg["role"] not in ROLES:  # lists are unhashable
            raise _invalid(f"messages.{i}.role", "must be 'user' or 'assistant'")
        content = msg.get("content")
        if isinstance(content, list):
            _check_blocks(content, f"messages.{i}.content")
        elif not isinstance(content, str):
            raise _invalid(f"messages.{i}.content", "must be a string or an array of content blocks")


def _check_system(system: Any) -> None:
    if system is None or isinstance(system, str):
        return
    if not isinstance(system, list):
        raise _invalid("system", "must be a string or an array of text blocks")
    for j, block in enumerate(system):
        text_block = isinstance(block, dict) and block.get("type") == "text"
        if not text_block or not isinstance(block.get("text"), str):
            raise _invalid(f"system.{j}", "must be a text block with a string 'text'")


def _check_tools(tools: Any) -> None:
    if tools is None:
        return
    if not isinstance(tools, list):
        raise _invalid("tools", "must be an array")
    for i, tool in enumerate(tools):
        if not isinstance(tool, dict):
            raise _invalid(f"tools.{i}", "must be an object")
        name = tool.get("name")
        if not isinstance(name, str) or not name:
            raise _invalid(f"tools.{i}.name", "is required and must be a non-empty string")
        # Server tools ("web_search_20250305", ...) carry a versioned type and no schema.
        if tool.get("type", "custom") == "custom" and not isinstance(tool.get("input_schema"), dict):
            raise _invalid(f"tools.{i}.input_schema", "is required and must be an object")


def _check_tool_choice(choice: Any) -> None:
    if choice is None:
        return
    if not isinstance(choice, dict) or choice.get("type") not in _TOOL_CHOICES:
        raise _invalid("tool_choice.type", f"must be one of {sorted(_TOOL_CHOICES)}")
    if choice["type"] == "tool" and not isinstance(choice.get("name"), str):
        raise _invalid("tool_choice.name", "is required when type is 'tool'")


def parse_messages(raw: bytes, limits: BodyLimits = BODY_LIMITS) -> Payload:
    """Validate a Messages API body; raise :class:`InvalidRequest` naming the field (``param``).

    Anthropic requires ``max_tokens`` (unlike OpenAI), so ``Payload.max_tokens`` is always set.
    ``temperature`` is 0..1 here, not OpenAI's 0..2.
    """
    body = load_json_object(raw)
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise _invalid("model", "is required and must be a non-empty string")
    max_tokens = body.get("max_tokens")
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
        raise _invalid("max_tokens", "is required and must be an integer >= 1")
    if max_tokens > limits.max_output_tokens:
        raise _invalid("max_tokens", f"must be at most {limits.max_output_tokens}")
    _check_messages(body.get("messages"), limits.max_messages)
    _check_system(body.get("system"))
    stream = body.get("stream", False)
    if stream is None:
        stream = False
    if not isinstance(stream, bool):
        raise _invalid("stream", "must be a boolean")
    for name in ("temperature", "top_p"):
        value = body.get(name)
        if value is not None and (not _is_number(value) or not 0 <= value <= 1):
            raise _invalid(name, "must be a number between 0 and 1")
    top_k = body.get("top_k")
    if top_k is not None and (not _is_int(top_k) or top_k < 0):
        raise _invalid("top_k", "must be an integer >= 0")
    _check_tools(body.get("tools"))
    _check_tool_choice(body.get("tool_choice"))
    stops = body.get("stop_sequences")
    if stops is not None and (not isinstance(stops, list) or not all(isinstance(s, str) for s in stops)):
        raise _invalid("stop_sequences", "must be an array of strings")
    metadata = body.get("metadata")
    if metadata is not None:
        if not isinstance(metadata, dict):
            raise _invalid("metadata", "must be an object")
        user_id = metadata.get("user_id")
        if user_id is not None and not isinstance(user_id, str):
            raise _invalid("metadata.user_id", "must be a string")
    return Payload(
        model=model,
        body=body,
        stream=stream,
        max_tokens=max_tokens,
        estimated_prompt_tokens=estimate_tokens(raw),
    )


# ------------------------------------------------------------------------------------------ errors

_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    502: "api_error",
    503: "overloaded_error",
    504: "api_error",
    OVERLOADED_STATUS: "overloaded_error",
}


def _is_overload(err: GatewayError) -> bool:
    return isinstance(err, Overloaded) or err.status in (503, OVERLOADED_STATUS)


def error_type(err: GatewayError) -> str:
    """Anthropic's ``error.type`` for ``err``, chosen by status (unknown 4xx: invalid request)."""
    if _is_overload(err):
        return "overloaded_error"
    return _ERROR_TYPES.get(err.status, "invalid_request_error" if err.status < 500 else "api_error")


def status_for(err: GatewayError) -> int:
    """The HTTP status an Anthropic client expects for ``err``.

    Anthropic answers overload with 529, not 503; the SDKs retry 529 (with ``retry-after``) the way
    they retry 503 from OpenAI. So our 503 ``Overloaded`` goes out as 529 on the Messages API; every
    other status is unchanged.
    """
    return OVERLOADED_STATUS if _is_overload(err) else err.status


def error_body(err: GatewayError, *, request_id: str | None = None) -> bytes:
    """``{"type":"error","error":{"type":...,"message":...}}`` (plus ``request_id`` when given)."""
    out: dict[str, Any] = {"type": "error", "error": {"type": error_type(err), "message": err.message}}
    if request_id is not None:
        out["request_id"] = request_id
    return _encode(out)


def error_event(err: GatewayError) -> bytes:
    """The SSE ``error`` event that ends a stream which failed after it started."""
    return b"event: error\ndata: " + error_body(err) + b"\n\n"


# ---------------------------------------------------------------------------------------- messages


def message_object(
    *,
    id: str,
    model: str,
    content: str | list[dict[str, Any]],
    stop_reason: str | None,
    input_tokens: int,
    output_tokens: int,
    stop_sequence: str | None = None,
) -> dict[str, Any]:
    """One non-streaming ``message`` as a dict; ``content`` as a string means one text block."""
    blocks = [{"type": "text", "text": content}] if isinstance(content, str) else content
    return {
        "id": id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": blocks,
        "stop_reason": stop_reason,
        "stop_sequence": stop_sequence,
        "usage": {"input_tokens": input_tokens, "output_tokens": output_tokens},
    }


def message(
    *,
    id: str,
    model: str,
    content: str | list[dict[str, Any]],
    stop_reason: str | None,
    input_tokens: int,
    output_tokens: int,
    stop_sequence: str | None = None,
) -> bytes:
    """One non-streaming ``message`` response body."""
    return _encode(
        message_object(
            id=id,
            model=model,
            content=content,
            stop_reason=stop_reason,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            stop_sequence=stop_sequence,
        )
    )


# ------------------------------------------------------------------------------------------ stream

# Anthropic's pings carry Python-style spacing on the wire; every other event is compact JSON.
PING = b'event: ping\ndata: {"type": "ping"}\n\n'
MESSAGE_STOP = b'event: message_stop\ndata: {"type":"message_stop"}\n\n'


def _event(name: str, data: dict[str, Any]) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + _encode(data) + b"\n\n"


def message_start(*, id: str, model: str, input_tokens: int, output_tokens: int = 1) -> bytes:
    """The first event; Anthropic reports ``output_tokens`` 1 here and the running total later."""
    msg = message_object(
        id=id,
        model=model,
        content=[],
        stop_reason=None,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
    )
    return _event("message_start", {"type": "message_start", "message": msg})


def content_block_start(index: int, block: dict[str, Any]) -> bytes:
    data = {"type": "content_block_start", "index": index, "content_block": block}
    return _event("content_block_start", data)


def text_block_start(index: int) -> bytes:
    return content_block_start(index, {"type": "text", "text": ""})


def tool_use_block_start(index: int, *, id: str, name: str) -> bytes:
    """A ``tool_use`` block opens with an empty ``input``; the JSON follows as ``input_json_delta``."""
    return content_block_start(index, {"type": "tool_use", "id": id, "name": name, "input": {}})


_TAIL = b"}}\n\n"
_DELTA_HEAD = b'event: content_block_delta\ndata: {"type":"content_block_delta","index":'


def text_delta(index: int, text: str) -> bytes:
    head = _DELTA_HEAD + str(index).encode()
    return head + b',"delta":{"type":"text_delta","text":' + _encode(text) + _TAIL


def input_json_delta(index: int, partial_json: str) -> bytes:
    head = _DELTA_HEAD + str(index).encode()
    return head + b',"delta":{"type":"input_json_delta","partial_json":' + _encode(partial_json) + _TAIL


def content_block_stop(index: int) -> bytes:
    return (
        b'event: content_block_stop\ndata: {"type":"content_block_stop","index":'
        + str(index).encode()
        + b"}\n\n"
    )


def message_delta(
    *,
    stop_reason: str | None,
    output_tokens: int,
    stop_sequence: str | None = None,
    input_tokens: int | None = None,
) -> bytes:
    """Carries the stop reason and the cumulative ``output_tokens`` (and, if known, final input)."""
    usage: dict[str, int] = {"output_tokens": output_tokens}
    if input_tokens is not None:
        usage = {"input_tokens": input_tokens, "output_tokens": output_tokens}
    return _event(
        "message_delta",
        {
            "type": "message_delta",
            "delta": {"stop_reason": stop_reason, "stop_sequence": stop_sequence},
            "usage": usage,
        },
    )


def text_stream(
    *,
    id: str,
    model: str,
    pieces: Iterable[str],
    stop_reason: str,
    input_tokens: int,
    output_tokens: int,
) -> list[bytes]:
    """The whole event sequence of a one-text-block answer, e.g. for the mock upstream."""
    out = [message_start(id=id, model=model, input_tokens=input_tokens), text_block_start(0), PING]
    out.extend(text_delta(0, piece) for piece in pieces)
    out.append(content_block_stop(0))
    out.append(message_delta(stop_reason=stop_reason, output_tokens=output_tokens))
    out.append(MESSAGE_STOP)
    return out
