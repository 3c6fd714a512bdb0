"""OpenAI's Responses API as chat completions: request validation, the request and the whole answer.

Several agent tools speak only ``POST /v1/responses``; every deployment seawall knows speaks chat
completions (or Anthropic Messages, reached through :mod:`seawall.providers.translate`). So a
Responses request is rewritten here into a chat completions body, sent through the gateway's
ordinary chat path, and the ``chat.completion`` that comes back is rewritten into a ``response``
object. Pure functions, no I/O: the edge (:mod:`seawall.edges.responses`) supplies ids, clocks and
the stored conversation of ``previous_response_id``. Streams are in
:mod:`seawall.providers.responses_stream`.

What maps and what does not (kept small and written down here):

* ``instructions`` -> a leading ``system`` message (not carried into later turns, as OpenAI says).
* ``input``: a string, or items: messages (``input_text``/``input_image``/``output_text`` parts),
  ``function_call`` (an assistant ``tool_calls`` entry) and ``function_call_output`` (a ``tool``
  message). ``reasoning`` items are skipped. Anything else (files, item references, built-in tool
  calls) is a 400 naming the item.
* ``tools``: ``function`` tools only; built-in tools (web search, file search, computer use, MCP)
  are a 400: the gateway has nothing that runs them.
* ``text.format`` -> ``response_format``; ``max_output_tokens`` -> ``max_completion_tokens``;
  ``reasoning.effort`` -> ``reasoning_effort``; ``temperature``, ``top_p``, ``parallel_tool_calls``,
  ``service_tier``, ``user`` as they are. ``metadata`` is kept on the response, not sent upstream.
* ``background``, ``conversation`` and ``prompt`` (server-side templates) are a 400.
* A stored conversation is a list of chat messages: what the upstream saw (without instructions)
  plus the assistant's answer. ``previous_response_id`` prepends it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import msgspec

from seawall.core.errors import GatewayError, InvalidRequest, UpstreamError
from seawall.providers.openai import load_json_object

__all__ = [
    "ResponsesCall",
    "chat_request",
    "conversation_after",
    "deleted_body",
    "function_call_item",
    "input_messages",
    "item_ids",
    "message_item",
    "output_from_chat",
    "parse_responses",
    "response_body",
    "response_error",
    "response_object",
    "status_of",
    "usage_from_chat",
]

_encode = msgspec.json.encode
_INPUT_ROLES = frozenset({"user", "assistant", "system", "developer"})
_TOOL_CHOICES = frozenset({"auto", "none", "required"})
_REFUSED = {
    "background": "'background' responses are not supported by this gateway.",
    "conversation": "'conversation' objects are not supported by this gateway; use previous_response_id.",
    "prompt": "'prompt' templates are not supported by this gateway.",
}
#: chat ``finish_reason`` -> the response's ``incomplete_details.reason`` (others: completed).
_INCOMPLETE = {"length": "max_output_tokens", "content_filter": "content_filter"}


@dataclass(frozen=True, slots=True)
class ResponsesCall:
    """A validated Responses request: the body plus the fields the gateway acts on."""

    body: dict[str, Any]
    model: str
    stream: bool = False
    store: bool = True
    previous_response_id: str | None = None
    instructions: str | None = None
    tools: list[dict[str, Any]] = field(default_factory=list)


def _bad(message: str, param: str) -> InvalidRequest:
    return InvalidRequest(message, param=param)


def _opt_bool(body: dict[str, Any], name: str, default: bool) -> bool:
    value = body.get(name)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise _bad(f"'{name}' must be a boolean.", name)
    return value


def _opt_number(body: dict[str, Any], name: str, low: float, high: float) -> None:
    value = body.get(name)
    if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)
                              or not low <= value <= high):
        raise _bad(f"'{name}' must be a number between {low:g} and {high:g}.", name)


def _check_tools(tools: Any) -> list[dict[str, Any]]:
    if tools is None:
        return []
    if not isinstance(tools, list):
        raise _bad("'tools' must be an array.", "tools")
    for i, tool in enumerate(tools):
        if not isinstance(tool, dict):
            raise _bad(f"'tools[{i}]' must be an object.", f"tools[{i}]")
        kind = tool.get("type")
        if kind != "function":
            raise _bad(f"'tools[{i}].type' {kind!r} is not supported by this gateway; only 'function' tools"
                       " are (it has nothing that runs built-in tools).", f"tools[{i}].type")
        name = tool.get("name")
        if not isinstance(name, str) or not name:
            raise _bad(f"'tools[{i}].name' is required.", f"tools[{i}].name")
        params = tool.get("parameters")
        if params is not None and not isinstance(params, dict):
            raise _bad(f"'tools[{i}].parameters' must be a JSON Schema object.", f"tools[{i}].parameters")
    return tools


def parse_responses(raw: bytes) -> ResponsesCall:
    """Validate a ``POST /v1/responses`` body; raise :class:`InvalidRequest` naming the field."""
    body = load_json_object(raw)
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise _bad("'model' is required and must be a non-empty string.", "model")
    for name, message in _REFUSED.items():
        if body.get(name):
            raise _bad(message, name)
    value = body.get("input")
    if not (isinstance(value, str) or (isinstance(value, list) and value)):
        raise _bad("'input' must be a string or a non-empty array of input items.", "input")
    instructions = body.get("instructions")
    if instructions is not None and not isinstance(instructions, str):
        raise _bad("'instructions' must be a string.", "instructions")
    previous = body.get("previous_response_id")
    if previous is not None and (not isinstance(previous, str) or not 0 < len(previous) <= 128):
        raise _bad("'previous_response_id' must be a response id.", "previous_response_id")
    limit = body.get("max_output_tokens")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise _bad("'max_output_tokens' must be an integer >= 1.", "max_output_tokens")
    _opt_number(body, "temperature", 0, 2)
    _opt_number(body, "top_p", 0, 1)
    metadata = body.get("metadata")
    if metadata is not None and not isinstance(metadata, dict):
        raise _bad("'metadata' must be an object of strings.", "metadata")
    return ResponsesCall(
        body=body, model=model, stream=_opt_bool(body, "stream", False), store=_opt_bool(body, "store", True),
        previous_response_id=previous, instructions=instructions, tools=_check_tools(body.get("tools")),
    )


# ------------------------------------------------------------------------------ request -> chat


def _text_of(content: Any, param: str) -> str:
    """The text of a string or of an array of text parts (a function call's output, a refusal)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for j, part in enumerate(content):
            if not isinstance(part, dict) or not isinstance(part.get("text"), str):
                raise _bad(f"'{param}[{j}]' must be a text part here.", f"{param}[{j}]")
            texts.append(part["text"])
        return "".join(texts)
    raise _bad(f"'{param}' must be a string or an array of text parts.", param)


def _chat_part(part: Any, param: str) -> dict[str, Any]:
    kind = part.get("type") if isinstance(part, dict) else None
    if kind in ("input_text", "output_text", "text"):
        text = part.get("text")
        if not isinstance(text, str):
            raise _bad(f"'{param}.text' must be a string.", f"{param}.text")
        return {"type": "text", "text": text}
    if kind == "refusal":
        return {"type": "text", "text": str(part.get("refusal") or "")}
    if kind == "input_image":
        url = part.get("image_url")
        if not isinstance(url, str):
            raise _bad(f"'{param}.image_url' is required (file_id images are not supported by this gateway).",
                       f"{param}.image_url")
        image: dict[str, Any] = {"url": url}
        if part.get("detail") in ("low", "high", "auto"):
            image["detail"] = part["detail"]
        return {"type": "image_url", "image_url": image}
    raise _bad(f"'{param}.type' {kind!r} is not supported by this gateway.", f"{param}.type")


def _message(item: dict[str, Any], param: str) -> dict[str, Any]:
    role = item.get("role")
    if role not in _INPUT_ROLES:
        raise _bad(f"'{param}.role' must be one of {sorted(_INPUT_ROLES)}.", f"{param}.role")
    content = item.get("content")
    if isinstance(content, str):
        return {"role": role, "content": content}
    if not isinstance(content, list):
        raise _bad(f"'{param}.content' must be a string or an array of content parts.", f"{param}.content")
    parts = [_chat_part(part, f"{param}.content[{j}]") for j, part in enumerate(content)]
    if role != "user" or all(p["type"] == "text" for p in parts):
        if any(p["type"] != "text" for p in parts):
            raise _bad(f"'{param}.content' may hold images only in a user message.", f"{param}.content")
        # Text-only content as one string: every chat upstream (and template) takes that form.
        return {"role": role, "content": "".join(p["text"] for p in parts)}
    return {"role": role, "content": parts}


def _function_call(item: dict[str, Any], param: str) -> dict[str, Any]:
    call_id, name, arguments = item.get("call_id"), item.get("name"), item.get("arguments")
    if not isinstance(call_id, str) or not call_id:
        raise _bad(f"'{param}.call_id' is required.", f"{param}.call_id")
    if not isinstance(name, str) or not name:
        raise _bad(f"'{param}.name' is required.", f"{param}.name")
    if not isinstance(arguments, str):
        raise _bad(f"'{param}.arguments' must be a JSON string.", f"{param}.arguments")
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


def input_messages(value: str | list[Any]) -> list[dict[str, Any]]:
    """The chat messages for a request's ``input`` (consecutive function calls share one turn)."""
    if isinstance(value, str):
        return [{"role": "user", "content": value}]
    messages: list[dict[str, Any]] = []
    for i, item in enumerate(value):
        param = f"input[{i}]"
        if not isinstance(item, dict):
            raise _bad(f"'{param}' must be an object.", param)
        kind = item.get("type", "message")
        if kind == "message":
            messages.append(_message(item, param))
        elif kind == "function_call":
            call = _function_call(item, param)
            last = messages[-1] if messages else None
            if last is not None and last["role"] == "assistant" and "tool_calls" in last:
                last["tool_calls"].append(call)
            elif last is not None and last["role"] == "assistant" and isinstance(last.get("content"), str):
                last["tool_calls"] = [call]
            else:
                messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
        elif kind == "function_call_output":
            call_id = item.get("call_id")
            if not isinstance(call_id, str) or not call_id:
                raise _bad(f"'{param}.call_id' is required.", f"{param}.call_id")
            output = _text_of(item.get("output"), f"{param}.output")
            messages.append({"role": "tool", "tool_call_id": call_id, "content": output})
        elif kind == "reasoning":
            continue  # a reasoning model's own notes; a chat upstream has nowhere to put them
        else:
            raise _bad(f"'{param}.type' {kind!r} is not supported by this gateway.", f"{param}.type")
    return messages


def _chat_tools(tools: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for tool in tools:
        fn: dict[str, Any] = {"name": tool["name"]}
        for name in ("description", "parameters", "strict"):
            if tool.get(name) is not None:
                fn[name] = tool[name]
        out.append({"type": "function", "function": fn})
    return out


def _chat_tool_choice(choice: Any) -> Any:
    if isinstance(choice, str) and choice in _TOOL_CHOICES:
        return choice
    if isinstance(choice, dict) and choice.get("type") == "function" and isinstance(choice.get("name"), str):
        return {"type": "function", "function": {"name": choice["name"]}}
    raise _bad("'tool_choice' must be 'auto', 'none', 'required' or a function.", "tool_choice")


def _response_format(text: Any) -> dict[str, Any] | None:
    if text is None:
        return None
    fmt = text.get("format") if isinstance(text, dict) else None
    if fmt is None:
        return None
    kind = fmt.get("type") if isinstance(fmt, dict) else None
    if kind == "text":
        return None
    if kind == "json_object":
        return {"type": "json_object"}
    if kind == "json_schema":
        assert isinstance(fmt, dict)
        if not isinstance(fmt.get("name"), str) or not isinstance(fmt.get("schema"), dict):
            raise _bad("'text.format' needs a 'name' and a 'schema' object.", "text.format")
        spec = {k: fmt[k] for k in ("name", "schema", "strict", "description") if fmt.get(k) is not None}
        return {"type": "json_schema", "json_schema": spec}
    raise _bad("'text.format.type' must be 'text', 'json_object' or 'json_schema'.", "text.format.type")


def chat_request(call: ResponsesCall, history: list[dict[str, Any]]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The chat completions body for ``call`` after the stored ``history``, and this turn's input
    messages (what a later ``previous_response_id`` carries forward)."""
    body = call.body
    turn = input_messages(body["input"])
    messages = ([{"role": "system", "content": call.instructions}] if call.instructions else []) + history + turn
    chat: dict[str, Any] = {"model": call.model, "messages": messages}
    if call.tools:
        chat["tools"] = _chat_tools(call.tools)
    if body.get("tool_choice") is not None:
        chat["tool_choice"] = _chat_tool_choice(body["tool_choice"])
    if body.get("max_output_tokens") is not None:
        chat["max_completion_tokens"] = body["max_output_tokens"]
    for name in ("temperature", "top_p", "parallel_tool_calls", "service_tier", "user"):
        if body.get(name) is not None:
            chat[name] = body[name]
    effort = body.get("reasoning", {}).get("effort") if isinstance(body.get("reasoning"), dict) else None
    if isinstance(effort, str):
        chat["reasoning_effort"] = effort
    fmt = _response_format(body.get("text"))
    if fmt is not None:
        chat["response_format"] = fmt
    if call.stream:
        chat["stream"] = True
        chat["stream_options"] = {"include_usage": True}  # the final event reports usage
    return chat, turn


# ----------------------------------------------------------------------------- chat -> response


def usage_from_chat(usage: Any) -> dict[str, Any] | None:
    """A chat ``usage`` object in the Responses API's shape (``None`` if there is none)."""
    if not isinstance(usage, dict):
        return None
    prompt = int(usage.get("prompt_tokens") or 0)
    completion = int(usage.get("completion_tokens") or 0)
    details = usage.get("prompt_tokens_details") or {}
    cached = details.get("cached_tokens") or 0
    written = details.get("cache_write_tokens") or 0
    reasoning = (usage.get("completion_tokens_details") or {}).get("reasoning_tokens") or 0
    return {"input_tokens": prompt,
            "input_tokens_details": {"cached_tokens": int(cached), "cache_write_tokens": int(written)},
            "output_tokens": completion, "output_tokens_details": {"reasoning_tokens": int(reasoning)},
            "total_tokens": prompt + completion}


def message_item(item_id: str, text: str | None, refusal: str | None, status: str) -> dict[str, Any]:
    """An assistant ``message`` output item."""
    content: list[dict[str, Any]] = []
    if text is not None:
        content.append({"type": "output_text", "text": text, "annotations": [], "logprobs": []})
    if refusal is not None:
        content.append({"type": "refusal", "refusal": refusal})
    return {"id": item_id, "type": "message", "status": status, "role": "assistant", "content": content}


def function_call_item(item_id: str, call_id: str, name: str, arguments: str, status: str) -> dict[str, Any]:
    return {"id": item_id, "type": "function_call", "status": status, "call_id": call_id, "name": name,
            "arguments": arguments}


def item_ids(response_id: str) -> tuple[str, str]:
    """The prefixes of a response's output item ids (``msg_...``, ``fc_...``), derived from its id so
    that the stream's items and the final response's items agree."""
    suffix = response_id.removeprefix("resp_")
    return f"msg_{suffix}", f"fc_{suffix}"


def output_from_chat(response_id: str, message: dict[str, Any]) -> list[dict[str, Any]]:
    """The output items of one chat ``message``: its text (or refusal), then its tool calls."""
    msg_id, fc_id = item_ids(response_id)
    output: list[dict[str, Any]] = []
    text, refusal = message.get("content"), message.get("refusal")
    if text or refusal:
        output.append(message_item(msg_id, text if isinstance(text, str) else None,
                                   refusal if isinstance(refusal, str) else None, "completed"))
    for k, call in enumerate(message.get("tool_calls") or []):
        fn = call.get("function") if isinstance(call, dict) else None
        if not isinstance(fn, dict):
            raise UpstreamError("The upstream's tool call has no function.", reason="upstream_malformed")
        output.append(function_call_item(f"{fc_id}_{k}", str(call.get("id") or f"call_{k}"),
                                         str(fn.get("name") or ""), str(fn.get("arguments") or ""), "completed"))
    return output


def response_object(call: ResponsesCall, *, id: str, created_at: int, model: str, status: str,
                    output: list[dict[str, Any]], usage: dict[str, Any] | None,
                    incomplete_reason: str | None = None, error: dict[str, str] | None = None,
                    completed_at: int | None = None, service_tier: str | None = None) -> dict[str, Any]:
    """A ``response`` object with every field OpenAI's schema requires, echoing the request's knobs."""
    body = call.body
    text = body.get("text") if isinstance(body.get("text"), dict) else None
    out: dict[str, Any] = {
        "id": id,
        "object": "response",
        "created_at": created_at,
        "status": status,
        "completed_at": completed_at,
        "error": error,
        "incomplete_details": {"reason": incomplete_reason} if incomplete_reason else None,
        "instructions": call.instructions,
        "max_output_tokens": body.get("max_output_tokens"),
        "model": model,
        "output": output,
        "parallel_tool_calls": body.get("parallel_tool_calls", True) is not False,
        "previous_response_id": call.previous_response_id,
        "reasoning": None,
        "store": call.store,
        "temperature": body.get("temperature", 1.0),
        "text": {"format": (text or {}).get("format") or {"type": "text"}},
        "tool_choice": body.get("tool_choice", "auto"),
        "tools": [{"type": "function", "name": t["name"], "description": t.get("description"),
                   "parameters": t.get("parameters"), "strict": t.get("strict", True)} for t in call.tools],
        "top_p": body.get("top_p", 1.0),
        "truncation": body.get("truncation") if body.get("truncation") in ("auto", "disabled") else "disabled",
        "metadata": body.get("metadata") or {},
    }
    if usage is not None:  # the schema has no null usage: absent until it is known
        out["usage"] = usage
    if isinstance(body.get("user"), str):
        out["user"] = body["user"]
    if service_tier in ("auto", "default", "flex", "scale", "priority"):
        out["service_tier"] = service_tier
    return out


def status_of(finish_reason: str | None) -> tuple[str, str | None]:
    """A response's ``status`` and ``incomplete_details.reason`` for a chat ``finish_reason``."""
    reason = _INCOMPLETE.get(finish_reason or "")
    return ("incomplete", reason) if reason else ("completed", None)


def response_body(call: ResponsesCall, chat: dict[str, Any], *, id: str, created_at: int,
                  completed_at: int) -> dict[str, Any]:
    """The ``response`` object for a whole ``chat.completion``."""
    choices = chat.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise UpstreamError("The upstream's chat completion has no choices.", reason="upstream_malformed")
    choice = choices[0]
    message = choice.get("message") or {}
    if not isinstance(message, dict) or not isinstance(message.get("tool_calls") or [], list):
        raise UpstreamError("The upstream's chat completion has a malformed message.",
                            reason="upstream_malformed")
    status, reason = status_of(choice.get("finish_reason"))
    return response_object(
        call, id=id, created_at=created_at, model=str(chat.get("model") or call.model), status=status,
        output=output_from_chat(id, message), usage=usage_from_chat(chat.get("usage")),
        incomplete_reason=reason, completed_at=completed_at if status == "completed" else None,
        service_tier=chat.get("service_tier"),
    )


def conversation_after(turn_context: list[dict[str, Any]], output: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The chat messages a later turn starts from: everything sent (without instructions) plus the
    assistant's answer rebuilt from the response's output items."""
    text = "".join(part.get("text", "") for item in output if item.get("type") == "message"
                   for part in item.get("content", []) if part.get("type") == "output_text")
    calls = [{"id": item["call_id"], "type": "function",
              "function": {"name": item["name"], "arguments": item["arguments"]}}
             for item in output if item.get("type") == "function_call"]
    answer: dict[str, Any] = {"role": "assistant", "content": text or None}
    if calls:
        answer["tool_calls"] = calls
    elif not text:
        answer["content"] = ""
    return [*turn_context, answer]


def response_error(err: GatewayError) -> dict[str, str]:
    """A failed response's ``error``: OpenAI's schema allows a fixed set of codes."""
    code = "rate_limit_exceeded" if err.status == 429 else "server_error"
    return {"code": code, "message": err.message}


def deleted_body(response_id: str) -> bytes:
    return _encode({"id": response_id, "object": "response.deleted", "deleted": True})
