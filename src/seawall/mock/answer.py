"""What the mock says: text, a tool call or JSON, decided from the request alone (pure, deterministic).

A newcomer's first tests against ``make run`` are tool calls and structured outputs, so the mock
honours what decides an answer's shape:

* ``tools``: when a function is offered and ``tool_choice`` allows it, the answer is one call to it
  (the named one, else the first) with arguments that validate against its ``parameters``
  (:func:`minimal_instance`). Under ``auto`` the mock answers in text once the last message is a
  tool result, so an agent loop ends: call, result, answer. ``required`` or a named function always
  calls. Anthropic's ``tool_choice`` (``auto``/``any``/``tool``/``none``) likewise.
* ``response_format``: ``json_object`` gives ``{"answer": "tok0 tok1 ..."}``; ``json_schema`` gives the
  smallest instance of the schema (valid under strict mode too: every listed property is present).
* ``stop`` (``stop_sequences``): the text is cut before the first match (``finish_reason`` stop).
* ``max_tokens``: a cut mid-answer finishes with ``length`` (JSON and arguments are cut too, as a
  real model's are).
* ``seed``: every answer is already a function of the request, so any seed reproduces it.

One token is one streamed piece: a word of text, or up to :data:`JSON_PIECE_CHARS` characters of
JSON. ``n`` and ``logprobs`` shape the OpenAI body around the answer (see the handler).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import msgspec

from seawall.mock.model import token_text

__all__ = ["JSON_PIECE_CHARS", "Answer", "ToolCall", "answer_for", "minimal_instance", "split_json"]

JSON_PIECE_CHARS = 8
_MAX_DEPTH = 12
_encode = msgspec.json.encode


@dataclass(frozen=True, slots=True)
class ToolCall:
    id: str
    name: str
    arguments: str  # JSON text


@dataclass(frozen=True, slots=True)
class Answer:
    """``pieces``: one per token, the text or (for a tool call) the arguments JSON, in order."""

    pieces: tuple[str, ...]
    finish_reason: str  # stop | length | tool_calls
    tool: ToolCall | None = None
    stop_sequence: str | None = None

    @property
    def text(self) -> str:
        return "".join(self.pieces)


@functools.lru_cache(maxsize=256)
def _text_pieces(tokens: int) -> tuple[str, ...]:
    """The plain answer's words (cached: the load tests' mock answers thousands a second)."""
    return tuple(token_text(i) for i in range(tokens))


def split_json(text: str) -> tuple[str, ...]:
    return tuple(text[i:i + JSON_PIECE_CHARS] for i in range(0, len(text), JSON_PIECE_CHARS)) or ("",)


# ------------------------------------------------------------------------------ schema instances


def _resolve(schema: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/"):
        node: Any = root
        for part in ref[2:].split("/"):
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict):
            return node
    return schema


def _number(schema: dict[str, Any], integer: bool) -> int | float:
    low = schema.get("minimum")
    exclusive = schema.get("exclusiveMinimum")
    value: float = 0
    if isinstance(low, int | float):
        value = max(value, low) if low > 0 or schema.get("maximum", 0) < 0 else low
    if isinstance(exclusive, int | float) and not isinstance(exclusive, bool) and value <= exclusive:
        value = exclusive + 1 if integer else exclusive + 0.5
    high = schema.get("maximum")
    if isinstance(high, int | float) and value > high:
        value = high
    step = schema.get("multipleOf")
    if isinstance(step, int | float) and step > 0 and value % step:
        value = (value // step + 1) * step
    return int(value) if integer else float(value)


def minimal_instance(schema: Any, root: Any = None, depth: int = 0) -> Any:
    """A small value that validates against JSON Schema ``schema`` (the common subset: types,
    ``properties``/``required``, ``items``/``minItems``, ``enum``/``const``, ``anyOf``/``oneOf``/``allOf``,
    local ``$ref``, string lengths, numeric bounds). Unknown or empty schemas give ``{}``."""
    if not isinstance(schema, dict) or depth > _MAX_DEPTH:
        return {}
    root = schema if root is None else root
    schema = _resolve(schema, root)
    if "const" in schema:
        return schema["const"]
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return schema["enum"][0]
    for key in ("anyOf", "oneOf"):
        options = schema.get(key)
        if isinstance(options, list) and options:
            non_null = [o for o in options if not (isinstance(o, dict) and o.get("type") == "null")]
            return minimal_instance((non_null or options)[0], root, depth + 1)
    if isinstance(schema.get("allOf"), list):
        merged: dict[str, Any] = {}
        for part in schema["allOf"]:
            value = minimal_instance(part, root, depth + 1)
            if isinstance(value, dict):
                merged.update(value)
        return merged
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), kind[0] if kind else None)
    if kind is None:
        kind = "object" if "properties" in schema else "array" if "items" in schema else None
    if kind == "object":
        props = schema.get("properties") if isinstance(schema.get("properties"), dict) else {}
        # Strict structured outputs list every property as required; without strictness the
        # required ones are enough, but all of them is valid too and reads better in a demo.
        return {name: minimal_instance(sub, root, depth + 1) for name, sub in props.items()}
    if kind == "array":
        count = schema.get("minItems") if isinstance(schema.get("minItems"), int) else 0
        return [minimal_instance(schema.get("items", {}), root, depth + 1) for _ in range(count)]
    if kind == "string":
        low = schema.get("minLength") if isinstance(schema.get("minLength"), int) else 0
        high = schema.get("maxLength") if isinstance(schema.get("maxLength"), int) else None
        formats = {"date": "2024-01-01", "date-time": "2024-01-01T00:00:00Z", "email": "mock@example.com",
                   "uri": "https://example.com", "uuid": "00000000-0000-0000-0000-000000000000"}
        text = formats.get(str(schema.get("format")), "mock")
        text = text + "x" * max(0, low - len(text))
        return text[:high] if high is not None else text
    if kind == "integer":
        return _number(schema, True)
    if kind == "number":
        return _number(schema, False)
    if kind == "boolean":
        return False
    if kind == "null":
        return None
    return {}


# ------------------------------------------------------------------------------------ decisions


def _chosen_tool(body: dict[str, Any], anthropic: bool) -> dict[str, Any] | None:
    """The tool definition to call (``{"name", "parameters"}``), or ``None`` for a text answer."""
    tools = body.get("tools")
    if not isinstance(tools, list) or not tools:
        return None
    defs = []
    for tool in tools:
        if not isinstance(tool, dict):
            continue
        if anthropic and isinstance(tool.get("name"), str) and "input_schema" in tool:
            defs.append({"name": tool["name"], "parameters": tool.get("input_schema")})
        elif not anthropic and isinstance(tool.get("function"), dict):
            fn = tool["function"]
            defs.append({"name": fn.get("name"), "parameters": fn.get("parameters")})
        elif not anthropic and isinstance(tool.get("name"), str):  # a legacy ``functions`` entry
            defs.append({"name": tool["name"], "parameters": tool.get("parameters")})
    if not defs:
        return None
    choice = body.get("tool_choice")
    named: str | None = None
    forced = False
    if anthropic and isinstance(choice, dict):
        kind = choice.get("type")
        if kind == "none":
            return None
        forced = kind in ("any", "tool")
        named = choice.get("name") if kind == "tool" else None
    elif not anthropic:
        if choice == "none":
            return None
        forced = choice == "required" or isinstance(choice, dict)
        if isinstance(choice, dict):
            named = (choice.get("function") or {}).get("name") or choice.get("name")
    if not forced:
        messages = body.get("messages")
        last = messages[-1] if isinstance(messages, list) and messages else None
        if _is_tool_result(last, anthropic):
            return None
    if named is not None:
        return next((d for d in defs if d["name"] == named), defs[0])
    return defs[0]


def _is_tool_result(message: Any, anthropic: bool) -> bool:
    if not isinstance(message, dict):
        return False
    if not anthropic:
        return message.get("role") in ("tool", "function")
    content = message.get("content")
    return isinstance(content, list) and any(isinstance(b, dict) and b.get("type") == "tool_result"
                                             for b in content)


def _stops(body: dict[str, Any], anthropic: bool) -> list[str]:
    value = body.get("stop_sequences" if anthropic else "stop")
    if isinstance(value, str):
        return [value] if value else []
    return [s for s in value if isinstance(s, str) and s] if isinstance(value, list) else []


def _cut_at_stop(pieces: tuple[str, ...], stops: list[str]) -> tuple[tuple[str, ...], str | None]:
    text = "".join(pieces)
    hits = [(text.find(s), s) for s in stops if s in text]
    if not hits:
        return pieces, None
    at, matched = min(hits)
    kept: list[str] = []
    used = 0
    for piece in pieces:
        if used + len(piece) >= at:
            if at > used:
                kept.append(piece[:at - used])
            break
        kept.append(piece)
        used += len(piece)
    return tuple(kept), matched


def _json_text(body: dict[str, Any], text_tokens: int) -> str | None:
    fmt = body.get("response_format")
    kind = fmt.get("type") if isinstance(fmt, dict) else None
    if kind == "json_object":
        return _encode({"answer": "".join(token_text(i) for i in range(text_tokens))}).decode()
    if kind == "json_schema":
        spec = fmt.get("json_schema") if isinstance(fmt, dict) else None
        schema = spec.get("schema") if isinstance(spec, dict) else None
        return _encode(minimal_instance(schema or {})).decode()
    return None


def answer_for(body: dict[str, Any], *, anthropic: bool, text_tokens: int, max_tokens: int | None,
               call_id: str) -> Answer:
    """The answer to one request. ``text_tokens``: how long a plain text answer is (the mock's
    configured length); ``max_tokens``: the request's limit, if any; ``call_id``: a tool call's id."""
    tool = _chosen_tool(body, anthropic)
    if tool is not None:
        arguments = _encode(minimal_instance(tool["parameters"] or {"type": "object"})).decode()
        pieces, finish = split_json(arguments), "tool_calls"
        call: ToolCall | None = ToolCall(call_id, str(tool["name"]), arguments)
    else:
        json_text = None if anthropic else _json_text(body, text_tokens)
        if json_text is not None:
            pieces = split_json(json_text)
        else:
            pieces = _text_pieces(text_tokens)
        finish, call = "stop", None
    if max_tokens is not None and len(pieces) > max_tokens:
        return Answer(pieces[:max_tokens], "length", call)
    if call is not None:
        return Answer(pieces, finish, call)
    cut, matched = _cut_at_stop(pieces, _stops(body, anthropic))
    return Answer(cut, finish, None, matched)
