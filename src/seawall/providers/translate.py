"""Translation between OpenAI chat completions and Anthropic Messages, both directions.

This is what lets a client of one API fail over to a deployment that speaks the other: requests,
whole responses and streams (event by event) are rewritten here, purely, with no I/O and no clock.

Decisions that lose or bend information (kept deliberately small and written down here):

* ``system``/``developer`` messages anywhere in an OpenAI conversation become Anthropic's single
  top-level ``system`` (a string for one, text blocks for several). The reverse gives one system
  message.
* OpenAI ``temperature`` is 0..2, Anthropic's 0..1: values above 1 are **clamped** to 1, not
  scaled, so the common values (0, 0.2, 0.7, 1) keep their meaning.
* Anthropic requires ``max_tokens``: absent on the OpenAI side it becomes :data:`DEFAULT_MAX_TOKENS`.
  The reverse writes ``max_completion_tokens`` (``max_tokens`` is refused by OpenAI reasoning models).
* Consecutive same-role messages are merged (tool results become ``user`` turns, so a run of tool
  messages followed by a user message is one Anthropic turn, ``tool_result`` blocks first as
  Anthropic requires).
* Anthropic-only knobs with no OpenAI meaning (``top_k``, ``thinking``, ``cache_control``,
  ``tool_result.is_error``) are dropped; OpenAI knobs with no Anthropic meaning (penalties, seed,
  ``logit_bias``, ``service_tier``, ``store``) are dropped. A feature the other side cannot honour
  without changing the answer's shape (``n`` > 1, JSON mode, logprobs, audio/file parts, server
  tools) raises :class:`Untranslatable`, so routing can skip that deployment instead of lying.
  Legacy ``functions``/``function_call`` are refused the same way (a 400 that says to use ``tools``)
  rather than dropped: dropped, the model answers as if no function existed.
* Thinking blocks in responses are not forwarded to OpenAI clients.
* Cache tokens: OpenAI ``prompt_tokens`` includes cached tokens, Anthropic ``input_tokens`` does not;
  usage is converted accordingly (``cache_read`` <-> ``prompt_tokens_details.cached_tokens``).

Upstream ``error`` events in a stream raise :class:`UpstreamError`; the server edge then ends the
client's stream with an error event in the client's own format.
"""

from __future__ import annotations

from typing import Any

import msgspec

from seawall.core.errors import InvalidRequest, UpstreamError
from seawall.core.types import Usage
from seawall.providers import anthropic, openai
from seawall.providers.sse import DONE, data_of, event

__all__ = [
    "ANTHROPIC_TO_OPENAI_FINISH",
    "DEFAULT_MAX_TOKENS",
    "OPENAI_TO_ANTHROPIC_STOP",
    "AnthropicToOpenAIStream",
    "OpenAIToAnthropicStream",
    "Untranslatable",
    "anthropic_request_to_openai",
    "anthropic_response_to_openai",
    "finish_reason_from_anthropic",
    "openai_request_to_anthropic",
    "openai_response_to_anthropic",
    "stop_reason_from_openai",
]

DEFAULT_MAX_TOKENS = 4096

#: Anthropic ``stop_reason`` -> OpenAI ``finish_reason`` (unknown or null: ``stop``).
ANTHROPIC_TO_OPENAI_FINISH = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}
#: OpenAI ``finish_reason`` -> Anthropic ``stop_reason`` (unknown or null: ``end_turn``).
#: OpenAI does not say which stop sequence matched, so ``stop`` is always ``end_turn``.
OPENAI_TO_ANTHROPIC_STOP = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}

_decode = msgspec.json.decode
_encode = msgspec.json.encode
_EMPTY_SCHEMA: dict[str, Any] = {"type": "object", "properties": {}}


class Untranslatable(InvalidRequest):
    """The request uses a feature the target API cannot express; a router should try elsewhere."""

    code = "untranslatable"


def finish_reason_from_anthropic(stop_reason: str | None) -> str:
    return ANTHROPIC_TO_OPENAI_FINISH.get(stop_reason or "", "stop")


def stop_reason_from_openai(finish_reason: str | None) -> str:
    return OPENAI_TO_ANTHROPIC_STOP.get(finish_reason or "", "end_turn")


def _json_text(value: Any) -> str:
    return _encode(value).decode()


def _tool_input(arguments: Any, param: str) -> dict[str, Any]:
    """OpenAI's JSON-string ``arguments`` as Anthropic's ``input`` object ("" means no arguments)."""
    if arguments is None or arguments == "":
        return {}
    try:
        value = _decode(arguments) if isinstance(arguments, str) else None
    except msgspec.DecodeError:
        value = None
    if not isinstance(value, dict):
        raise Untranslatable(f"'{param}' must be a JSON object to send it to Anthropic.", param=param)
    return value


def _tool_call(block: dict[str, Any]) -> dict[str, Any]:
    """An Anthropic ``tool_use`` block as an OpenAI ``tool_calls`` item."""
    args = _json_text(block.get("input") or {})
    fn = {"name": block.get("name"), "arguments": args}
    return {"id": block.get("id"), "type": "function", "function": fn}


# ------------------------------------------------------------------------ OpenAI -> Anthropic request


def _openai_texts(content: Any, param: str) -> list[str]:
    if isinstance(content, str):
        return [content] if content else []
    if content is None:
        return []
    if not isinstance(content, list):
        raise Untranslatable(f"'{param}' must be a string or an array of parts.", param=param)
    texts = []
    for j, part in enumerate(content):
        if not isinstance(part, dict) or part.get("type") not in ("text", "refusal"):
            raise Untranslatable(f"'{param}[{j}]' must be a text part here.", param=f"{param}[{j}]")
        text = part.get("text", part.get("refusal"))
        if isinstance(text, str) and text:
            texts.append(text)
    return texts


def _image_block(part: dict[str, Any], param: str) -> dict[str, Any]:
    image = part.get("image_url")
    url = image.get("url") if isinstance(image, dict) else image
    if not isinstance(url, str):
        raise Untranslatable(f"'{param}.image_url.url' must be a string.", param=f"{param}.image_url.url")
    if url.startswith("data:"):
        header, sep, data = url[5:].partition(",")
        media_type, _, encoding = header.partition(";")
        if not sep or encoding != "base64":
            raise Untranslatable(f"'{param}' must be a base64 data URL.", param=f"{param}.image_url.url")
        return {"type": "image", "source": {"type": "base64", "media_type": media_type, "data": data}}
    return {"type": "image", "source": {"type": "url", "url": url}}


def _user_content(content: Any, i: int) -> str | list[dict[str, Any]]:
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise Untranslatable(f"'messages[{i}].content' is required.", param=f"messages[{i}].content")
    blocks = []
    for j, part in enumerate(content):
        param = f"messages[{i}].content[{j}]"
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text":
            blocks.append({"type": "text", "text": part["text"]})
        elif kind == "image_url":
            blocks.append(_image_block(part, param))
        else:
            problem = f"'{param}.type' {kind!r} has no Anthropic equivalent."
            raise Untranslatable(problem, param=f"{param}.type")
    return blocks


def _assistant_content(msg: dict[str, Any], i: int) -> str | list[dict[str, Any]]:
    content = msg.get("content")
    calls = msg.get("tool_calls") or []
    if msg.get("function_call"):
        param = f"messages[{i}].function_call"
        raise Untranslatable(f"'{param}' (legacy functions) is not translated; use tools.", param=param)
    if isinstance(content, str) and not calls:
        return content
    blocks: list[dict[str, Any]] = [
        {"type": "text", "text": t} for t in _openai_texts(content, f"messages[{i}].content")
    ]
    for j, call in enumerate(calls):
        param = f"messages[{i}].tool_calls[{j}]"
        fn = call.get("function") if isinstance(call, dict) else None
        if not isinstance(fn, dict) or not isinstance(call.get("id"), str):
            raise Untranslatable(f"'{param}' must be a function call with an id.", param=param)
        blocks.append(
            {
                "type": "tool_use",
                "id": call["id"],
                "name": fn.get("name", ""),
                "input": _tool_input(fn.get("arguments"), f"{param}.function.arguments"),
            }
        )
    return blocks


def _as_blocks(content: str | list[dict[str, Any]]) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    return content


def _append(messages: list[dict[str, Any]], role: str, content: str | list[dict[str, Any]]) -> None:
    """Add a turn, merging it into the previous one if the role repeats (Anthropic alternates)."""
    if messages and messages[-1]["role"] == role:
        last = messages[-1]
        last["content"] = _as_blocks(last["content"]) + _as_blocks(content)
    else:
        messages.append({"role": role, "content": content})


def _tool_choice_to_anthropic(choice: Any, parallel: Any) -> dict[str, Any] | None:
    out: dict[str, Any] | None
    if choice is None:
        out = {"type": "auto"} if parallel is False else None
    elif choice == "auto":
        out = {"type": "auto"}
    elif choice == "required":
        out = {"type": "any"}
    elif choice == "none":
        out = {"type": "none"}
    elif isinstance(choice, dict) and isinstance(choice.get("function"), dict):
        out = {"type": "tool", "name": choice["function"].get("name")}
    else:
        raise Untranslatable("'tool_choice' has no Anthropic equivalent.", param="tool_choice")
    if out is not None and parallel is False and out["type"] != "none":
        out["disable_parallel_tool_use"] = True
    return out


def _tools_to_anthropic(tools: list[Any]) -> list[dict[str, Any]]:
    out = []
    for i, tool in enumerate(tools):
        fn = tool.get("function") if isinstance(tool, dict) and tool.get("type") == "function" else None
        if not isinstance(fn, dict):
            raise Untranslatable(f"'tools[{i}]' must be a function tool.", param=f"tools[{i}]")
        item: dict[str, Any] = {"name": fn.get("name")}
        if fn.get("description"):
            item["description"] = fn["description"]
        item["input_schema"] = fn.get("parameters") or _EMPTY_SCHEMA
        out.append(item)
    return out


def openai_request_to_anthropic(body: dict[str, Any]) -> dict[str, Any]:
    """A chat completions body as a Messages body (see the module notes for what bends)."""
    for name in ("logprobs", "top_logprobs", "audio"):
        if body.get(name):
            raise Untranslatable(f"'{name}' is not supported by Anthropic.", param=name)
    if (body.get("n") or 1) > 1:
        raise Untranslatable("'n' > 1 is not supported by Anthropic.", param="n")
    for name in ("functions", "function_call"):
        if body.get(name):
            raise Untranslatable(f"'{name}' (legacy function calling) is not translated to Anthropic; send the"
                                 " same functions as 'tools' (and 'tool_choice').", param=name)
    fmt = body.get("response_format")
    if isinstance(fmt, dict) and fmt.get("type", "text") != "text":
        raise Untranslatable("'response_format' is not translated to Anthropic.", param="response_format")

    system: list[str] = []
    messages: list[dict[str, Any]] = []
    for i, msg in enumerate(body.get("messages") or []):
        role = msg.get("role")
        if role in ("system", "developer"):
            system.extend(_openai_texts(msg.get("content"), f"messages[{i}].content"))
        elif role == "user":
            _append(messages, "user", _user_content(msg.get("content"), i))
        elif role == "assistant":
            content = _assistant_content(msg, i)
            if content:
                _append(messages, "assistant", content)
        elif role == "tool":
            call_id = msg.get("tool_call_id")
            if not isinstance(call_id, str):
                raise Untranslatable("'tool_call_id' is required.", param=f"messages[{i}].tool_call_id")
            result = msg.get("content")
            texts = (
                result
                if isinstance(result, str)
                else [{"type": "text", "text": t} for t in _openai_texts(result, f"messages[{i}].content")]
            )
            _append(messages, "user", [{"type": "tool_result", "tool_use_id": call_id, "content": texts}])
        else:
            raise Untranslatable(f"role {role!r} has no Anthropic equivalent.", param=f"messages[{i}].role")
    if not messages:  # found by the fuzzer: only system messages made a body Anthropic refuses
        raise Untranslatable("Anthropic needs at least one user or assistant message.", param="messages")
    for msg in messages:
        content = msg["content"]
        if msg["role"] == "user" and isinstance(content, list):
            # Anthropic wants tool results before anything else in the turn; keep relative order.
            msg["content"] = [b for b in content if b.get("type") == "tool_result"] + [
                b for b in content if b.get("type") != "tool_result"
            ]

    max_tokens = body.get("max_completion_tokens") or body.get("max_tokens") or DEFAULT_MAX_TOKENS
    out: dict[str, Any] = {"model": body.get("model"), "max_tokens": max_tokens}
    if system:
        out["system"] = system[0] if len(system) == 1 else [{"type": "text", "text": t} for t in system]
    out["messages"] = messages
    stop = body.get("stop")
    if stop:
        out["stop_sequences"] = [stop] if isinstance(stop, str) else list(stop)
    temperature = body.get("temperature")
    if temperature is not None:
        out["temperature"] = min(max(temperature, 0), 1)
    if body.get("top_p") is not None:
        out["top_p"] = body["top_p"]
    tools = body.get("tools")
    if tools:
        out["tools"] = _tools_to_anthropic(tools)
        choice = _tool_choice_to_anthropic(body.get("tool_choice"), body.get("parallel_tool_calls"))
        if choice is not None:
            out["tool_choice"] = choice
    if isinstance(body.get("user"), str):
        out["metadata"] = {"user_id": body["user"]}
    if body.get("stream"):
        out["stream"] = True
    return out


# ------------------------------------------------------------------------ Anthropic -> OpenAI request


def _image_part(block: dict[str, Any], param: str) -> dict[str, Any]:
    source = block.get("source") or {}
    if source.get("type") == "base64":
        url = f"data:{source.get('media_type')};base64,{source.get('data')}"
    elif source.get("type") == "url" and isinstance(source.get("url"), str):
        url = source["url"]
    else:
        raise Untranslatable(f"'{param}.source' has no OpenAI equivalent.", param=f"{param}.source")
    return {"type": "image_url", "image_url": {"url": url}}


def _tool_result_content(content: Any, param: str) -> str | list[dict[str, Any]]:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    parts = []
    for j, block in enumerate(content):
        if not isinstance(block, dict) or block.get("type") != "text":
            raise Untranslatable(f"'{param}.{j}': OpenAI tool results hold text only.", param=f"{param}.{j}")
        parts.append({"type": "text", "text": block["text"]})
    return parts


def _user_to_openai(content: Any, i: int) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"role": "user", "content": content}]
    out: list[dict[str, Any]] = []
    parts: list[dict[str, Any]] = []
    for j, block in enumerate(content):
        param = f"messages.{i}.content.{j}"
        kind = block.get("type")
        if kind == "tool_result":
            out.append(
                {
                    "role": "tool",
                    "tool_call_id": block.get("tool_use_id"),
                    "content": _tool_result_content(block.get("content"), f"{param}.content"),
                }
            )
        elif kind == "text":
            parts.append({"type": "text", "text": block["text"]})
        elif kind == "image":
            parts.append(_image_part(block, param))
        else:
            raise Untranslatable(f"'{param}.type' {kind!r} has no OpenAI equivalent.", param=f"{param}.type")
    if parts:
        out.append({"role": "user", "content": parts})
    return out


def _assistant_to_openai(content: Any, i: int) -> dict[str, Any]:
    if isinstance(content, str):
        return {"role": "assistant", "content": content}
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    for j, block in enumerate(content):
        kind = block.get("type")
        if kind == "text":
            texts.append(block["text"])
        elif kind == "tool_use":
            calls.append(_tool_call(block))
        elif kind not in ("thinking", "redacted_thinking"):
            param = f"messages.{i}.content.{j}.type"
            raise Untranslatable(f"'{param}' {kind!r} has no OpenAI equivalent.", param=param)
    msg: dict[str, Any] = {"role": "assistant", "content": "".join(texts) if texts or not calls else None}
    if calls:
        msg["tool_calls"] = calls
    return msg


def _tool_choice_to_openai(choice: dict[str, Any]) -> Any:
    kind = choice.get("type")
    if kind == "any":
        return "required"
    if kind == "tool":
        return {"type": "function", "function": {"name": choice.get("name")}}
    return "none" if kind == "none" else "auto"


def anthropic_request_to_openai(body: dict[str, Any]) -> dict[str, Any]:
    """A Messages body as a chat completions body (see the module notes for what bends)."""
    messages: list[dict[str, Any]] = []
    system = body.get("system")
    if isinstance(system, str) and system:
        messages.append({"role": "system", "content": system})
    elif isinstance(system, list) and system:
        messages.append({"role": "system", "content": [{"type": "text", "text": b["text"]} for b in system]})
    for i, msg in enumerate(body.get("messages") or []):
        if msg.get("role") == "assistant":
            messages.append(_assistant_to_openai(msg.get("content"), i))
        else:
            messages.extend(_user_to_openai(msg.get("content"), i))

    out: dict[str, Any] = {"model": body.get("model"), "messages": messages}
    if body.get("max_tokens") is not None:
        out["max_completion_tokens"] = body["max_tokens"]
    if body.get("stop_sequences"):
        out["stop"] = list(body["stop_sequences"])
    for name in ("temperature", "top_p"):
        if body.get(name) is not None:
            out[name] = body[name]
    tools = body.get("tools")
    if tools:
        converted = []
        for i, tool in enumerate(tools):
            if tool.get("type", "custom") != "custom":
                raise Untranslatable(
                    f"'tools.{i}' is a server tool with no OpenAI equivalent.", param=f"tools.{i}.type"
                )
            fn: dict[str, Any] = {"name": tool.get("name")}
            if tool.get("description"):
                fn["description"] = tool["description"]
            fn["parameters"] = tool.get("input_schema") or _EMPTY_SCHEMA
            converted.append({"type": "function", "function": fn})
        out["tools"] = converted
        choice = body.get("tool_choice")
        if isinstance(choice, dict):
            out["tool_choice"] = _tool_choice_to_openai(choice)
            if choice.get("disable_parallel_tool_use"):
                out["parallel_tool_calls"] = False
    metadata = body.get("metadata")
    if isinstance(metadata, dict) and isinstance(metadata.get("user_id"), str):
        out["user"] = metadata["user_id"]
    if body.get("stream"):
        # An Anthropic client needs output_tokens in message_delta, so always ask for usage.
        out["stream"] = True
        out["stream_options"] = {"include_usage": True}
    return out


# ----------------------------------------------------------------------------------------- responses


def _usage_from_anthropic(usage: dict[str, Any]) -> tuple[int, int, int]:
    """(prompt tokens incl. cache, completion tokens, cached-read tokens)."""
    cached = usage.get("cache_read_input_tokens") or 0
    prompt = (usage.get("input_tokens") or 0) + (usage.get("cache_creation_input_tokens") or 0) + cached
    return prompt, usage.get("output_tokens") or 0, cached


def _openai_usage(prompt: int, completion: int, cached: int) -> dict[str, Any]:
    out: dict[str, Any] = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }
    if cached:
        out["prompt_tokens_details"] = {"cached_tokens": cached}
    return out


def _cached_from_openai(usage: dict[str, Any]) -> int:
    details = usage.get("prompt_tokens_details")
    return (details.get("cached_tokens") or 0) if isinstance(details, dict) else 0


def anthropic_response_to_openai(
    msg: dict[str, Any], *, model: str, id: str | None = None, created: int = 0
) -> dict[str, Any]:
    """An Anthropic ``message`` as a ``chat.completion``; ``created`` comes from the caller's clock."""
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    for block in msg.get("content") or []:
        kind = block.get("type")
        if kind == "text":
            texts.append(block.get("text", ""))
        elif kind == "tool_use":
            calls.append(_tool_call(block))
    message: dict[str, Any] = {
        "role": "assistant",
        "content": "".join(texts) if texts or not calls else None,
        "refusal": None,
    }
    if calls:
        message["tool_calls"] = calls
    return {
        "id": id or msg.get("id", ""),
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": None,
                "finish_reason": finish_reason_from_anthropic(msg.get("stop_reason")),
            }
        ],
        "usage": _openai_usage(*_usage_from_anthropic(msg.get("usage") or {})),
        "system_fingerprint": openai.SYSTEM_FINGERPRINT,
    }


def openai_response_to_anthropic(
    resp: dict[str, Any], *, model: str, id: str | None = None
) -> dict[str, Any]:
    """A ``chat.completion`` as an Anthropic ``message``; raises :class:`UpstreamError` if malformed."""
    choices = resp.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise UpstreamError("Upstream response has no choices.", code="bad_upstream_response")
    choice = choices[0]
    msg = choice.get("message") or {}
    blocks: list[dict[str, Any]] = []
    content = msg.get("content")
    texts = (
        [content]
        if isinstance(content, str)
        else [p.get("text", "") for p in content or [] if isinstance(p, dict) and p.get("type") == "text"]
    )
    if msg.get("refusal"):
        texts.append(msg["refusal"])
    blocks.extend({"type": "text", "text": t} for t in texts if t)
    for call in msg.get("tool_calls") or []:
        fn = call.get("function") or {}
        try:
            args = _tool_input(fn.get("arguments"), "tool_calls.function.arguments")
        except Untranslatable:
            raise UpstreamError(
                "Upstream returned tool call arguments that are not a JSON object.",
                code="bad_upstream_response",
            ) from None
        blocks.append({"type": "tool_use", "id": call.get("id"), "name": fn.get("name"), "input": args})
    usage = resp.get("usage") or {}
    cached = _cached_from_openai(usage)
    out = anthropic.message_object(
        id=id or resp.get("id", ""),
        model=model,
        content=blocks,
        stop_reason=stop_reason_from_openai(choice.get("finish_reason")),
        input_tokens=(usage.get("prompt_tokens") or 0) - cached,
        output_tokens=usage.get("completion_tokens") or 0,
    )
    if cached:
        out["usage"]["cache_read_input_tokens"] = cached
    return out


# -------------------------------------------------------------------------------------------- streams


def _load_event(framed: bytes) -> dict[str, Any] | None:
    """The JSON object of one framed SSE event; None for comments and keep-alives."""
    data = data_of(framed)
    if not data:
        return None
    try:
        obj = _decode(data)
    except msgspec.DecodeError:
        raise _malformed_event() from None
    if not isinstance(obj, dict):
        raise _malformed_event()
    return obj


def _malformed_event() -> UpstreamError:
    """Found by fuzzing: events of the right type with fields of the wrong one (``message: true``)
    raised AttributeError deep in a converter; the stream now ends with a typed upstream error."""
    return UpstreamError("Upstream sent a malformed stream event.", code="bad_stream_event")


def _upstream_error(error: Any) -> UpstreamError:
    if not isinstance(error, dict):
        return UpstreamError("Upstream stream failed.", code="upstream_stream_error")
    code = error.get("code") or error.get("type") or "upstream_stream_error"
    return UpstreamError(str(error.get("message") or "Upstream stream failed."), code=str(code))


class AnthropicToOpenAIStream:
    """Turns Anthropic stream events into ``chat.completion.chunk`` events, one event at a time.

    Emits the role chunk first, then text and tool-call deltas (tool calls numbered from 0 in the
    order their blocks open), a finish-reason chunk, a usage chunk when ``include_usage``, and
    ``data: [DONE]``. State is per stream: make one per response.
    """

    __slots__ = (
        "_cached",
        "_finished",
        "_started",
        "_tools",
        "completion_tokens",
        "created",
        "done",
        "id",
        "include_usage",
        "model",
        "prompt_tokens",
    )

    def __init__(self, model: str, id: str, created: int, include_usage: bool = False) -> None:
        self.model = model
        self.id = id
        self.created = created
        self.include_usage = include_usage
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.done = False  # True once message_stop arrived and [DONE] went out
        self._cached = 0
        self._started = False
        self._finished = False
        self._tools: dict[int, int] = {}  # Anthropic block index -> OpenAI tool_calls index

    @property
    def usage(self) -> Usage:
        return Usage(self.prompt_tokens, self.completion_tokens)

    def _chunk(self, **fields: Any) -> bytes:
        return event(openai.chunk(id=self.id, created=self.created, model=self.model, **fields))

    def _tool_chunk(self, call: dict[str, Any]) -> bytes:
        # Same layout as openai.chunk, which has no tool_calls parameter.
        out = {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "system_fingerprint": openai.SYSTEM_FINGERPRINT,
            "choices": [
                {"index": 0, "delta": {"tool_calls": [call]}, "logprobs": None, "finish_reason": None}
            ],
            "usage": None,
        }
        return event(_encode(out))

    def _start(self, out: list[bytes]) -> None:
        if not self._started:
            self._started = True
            out.append(self._chunk(role="assistant", content=""))

    def _read_usage(self, usage: Any) -> None:
        if not isinstance(usage, dict):
            return
        if usage.get("input_tokens") is not None:
            self.prompt_tokens, _, self._cached = _usage_from_anthropic(usage)
        if usage.get("output_tokens") is not None:
            self.completion_tokens = usage["output_tokens"]

    def _finish(self, out: list[bytes], stop_reason: str | None) -> None:
        if not self._finished:
            self._finished = True
            out.append(self._chunk(finish_reason=finish_reason_from_anthropic(stop_reason)))

    def feed(self, framed: bytes) -> list[bytes]:
        """One upstream event in, zero or more framed OpenAI events out; a malformed event (a field of
        the wrong type) raises :class:`UpstreamError`."""
        try:
            return self._feed(framed)
        except (AttributeError, TypeError, KeyError, IndexError, ValueError):
            raise _malformed_event() from None

    def _feed(self, framed: bytes) -> list[bytes]:
        obj = _load_event(framed)
        if obj is None or self.done:
            return []
        kind = obj.get("type")
        out: list[bytes] = []
        if kind == "message_start":
            self._read_usage((obj.get("message") or {}).get("usage"))
            self._start(out)
        elif kind == "content_block_start":
            self._start(out)
            block = obj.get("content_block") or {}
            if block.get("type") == "tool_use":
                index = len(self._tools)
                self._tools[obj.get("index", 0)] = index
                call = {
                    "index": index,
                    "id": block.get("id"),
                    "type": "function",
                    "function": {"name": block.get("name"), "arguments": ""},
                }
                out.append(self._tool_chunk(call))
                if block.get("input"):
                    args = _json_text(block["input"])
                    out.append(self._tool_chunk({"index": index, "function": {"arguments": args}}))
            elif block.get("type") == "text" and block.get("text"):
                out.append(self._chunk(content=block["text"]))
        elif kind == "content_block_delta":
            self._start(out)
            delta = obj.get("delta") or {}
            dtype = delta.get("type")
            if dtype == "text_delta" and delta.get("text"):
                out.append(self._chunk(content=delta["text"]))
            elif dtype == "input_json_delta" and delta.get("partial_json"):
                tool_index = self._tools.get(obj.get("index", 0))
                if tool_index is not None:
                    call = {"index": tool_index, "function": {"arguments": delta["partial_json"]}}
                    out.append(self._tool_chunk(call))
        elif kind == "message_delta":
            self._start(out)
            self._read_usage(obj.get("usage"))
            self._finish(out, (obj.get("delta") or {}).get("stop_reason"))
        elif kind == "message_stop":
            self._start(out)
            self._finish(out, None)
            if self.include_usage:
                usage = _openai_usage(self.prompt_tokens, self.completion_tokens, self._cached)
                out.append(self._chunk(no_choices=True, usage=usage))
            out.append(DONE)
            self.done = True
        elif kind == "error":
            raise _upstream_error(obj.get("error"))
        # ping, content_block_stop and event types added later carry nothing to translate.
        return out


class OpenAIToAnthropicStream:
    """Turns ``chat.completion.chunk`` events into Anthropic stream events, one event at a time.

    Anthropic announces ``input_tokens`` in ``message_start``, before OpenAI reports any usage, so
    the caller passes its estimate (``input_tokens``); the real figure, when the upstream sends a
    usage chunk, goes out in ``message_delta``. Anthropic's ``message_delta`` comes after the usage,
    so it and ``message_stop`` are emitted on ``[DONE]``. State is per stream.
    """

    __slots__ = (
        "_block",
        "_block_is_text",
        "_next_block",
        "_pinged",
        "_started",
        "_stop_reason",
        "_tools",
        "_usage_seen",
        "completion_tokens",
        "done",
        "id",
        "input_tokens",
        "model",
        "prompt_tokens",
    )

    def __init__(self, model: str, id: str, *, input_tokens: int = 0) -> None:
        self.model = model
        self.id = id
        self.input_tokens = input_tokens
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.done = False  # True once [DONE] arrived and message_stop went out
        self._started = False
        self._pinged = False
        self._usage_seen = False
        self._stop_reason: str | None = None
        self._block: int | None = None  # index of the open block
        self._block_is_text = False
        self._next_block = 0
        self._tools: dict[int, int] = {}  # OpenAI tool_calls index -> Anthropic block index

    @property
    def usage(self) -> Usage:
        return Usage(self.prompt_tokens, self.completion_tokens)

    def _start(self, out: list[bytes]) -> None:
        if not self._started:
            self._started = True
            out.append(anthropic.message_start(id=self.id, model=self.model, input_tokens=self.input_tokens))

    def _close(self, out: list[bytes]) -> None:
        if self._block is not None:
            out.append(anthropic.content_block_stop(self._block))
            self._block = None

    def _open(self, out: list[bytes], start: bytes) -> int:
        self._close(out)
        index = self._block = self._next_block
        self._next_block += 1
        out.append(start)
        if not self._pinged:
            self._pinged = True
            out.append(anthropic.PING)
        return index

    def _text(self, out: list[bytes], text: str) -> None:
        block = self._block
        if block is None or not self._block_is_text:
            block = self._open(out, anthropic.text_block_start(self._next_block))
            self._block_is_text = True
        out.append(anthropic.text_delta(block, text))

    def _tool(self, out: list[bytes], call: dict[str, Any]) -> None:
        k = call.get("index", 0)
        fn = call.get("function") or {}
        block = self._tools.get(k)
        if block is None:
            call_id = call.get("id") or f"toolu_{self.id}_{k}"
            start = anthropic.tool_use_block_start(self._next_block, id=call_id, name=fn.get("name") or "")
            block = self._tools[k] = self._open(out, start)
            self._block_is_text = False
        args = fn.get("arguments")
        if args:
            if block != self._block:
                raise UpstreamError("Upstream interleaved tool call deltas.", code="bad_stream_event")
            out.append(anthropic.input_json_delta(block, args))

    def _read_usage(self, usage: Any) -> None:
        if isinstance(usage, dict):
            self._usage_seen = True
            cached = _cached_from_openai(usage)
            self.prompt_tokens = usage.get("prompt_tokens") or 0
            self.completion_tokens = usage.get("completion_tokens") or 0
            self.input_tokens = self.prompt_tokens - cached

    def feed(self, framed: bytes) -> list[bytes]:
        """One upstream event in, zero or more framed Anthropic events out; a malformed event (a field
        of the wrong type) raises :class:`UpstreamError`."""
        try:
            return self._feed(framed)
        except (AttributeError, TypeError, KeyError, IndexError, ValueError):
            raise _malformed_event() from None

    def _feed(self, framed: bytes) -> list[bytes]:
        if self.done:
            return []
        out: list[bytes] = []
        if data_of(framed) == b"[DONE]":
            self._start(out)
            self._close(out)
            out.append(
                anthropic.message_delta(
                    stop_reason=self._stop_reason or "end_turn",
                    output_tokens=self.completion_tokens,
                    input_tokens=self.input_tokens if self._usage_seen else None,
                )
            )
            out.append(anthropic.MESSAGE_STOP)
            self.done = True
            return out
        obj = _load_event(framed)
        if obj is None:
            return out
        if "error" in obj and not obj.get("choices"):
            raise _upstream_error(obj["error"])
        self._start(out)
        self._read_usage(obj.get("usage"))
        for choice in obj.get("choices") or []:
            if choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") or {}
            text = delta.get("content") or delta.get("refusal")
            if text:
                self._text(out, text)
            for call in delta.get("tool_calls") or []:
                self._tool(out, call)
            if choice.get("finish_reason"):
                self._stop_reason = stop_reason_from_openai(choice["finish_reason"])
                self._close(out)
        return out
