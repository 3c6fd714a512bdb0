"""The mock's answers on the wire: chat completions (``n`` choices, ``logprobs``, tool calls) and
Anthropic messages (text or ``tool_use``), whole and as stream frames.

Frames come as ``(head, piece, tail)``: the events before the first token, a function giving the
events of token ``i``, and the events after the last; the handler paces the pieces.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec

from seawall.mock.answer import Answer
from seawall.providers import anthropic, sse
from seawall.providers.openai import SYSTEM_FINGERPRINT

__all__ = ["anthropic_frames", "anthropic_message", "chat_body", "chat_frames", "stop_reason"]

Frames = tuple[list[bytes], Callable[[int], bytes], list[bytes]]
_encode = msgspec.json.encode
_NULL_USAGE_SUFFIX = b',"usage":null}'
_STOP_REASONS = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use"}


def stop_reason(answer: Answer) -> str:
    """Anthropic's ``stop_reason`` for an answer."""
    return "stop_sequence" if answer.stop_sequence is not None else _STOP_REASONS[answer.finish_reason]


# ------------------------------------------------------------------------------------------ OpenAI


def _logprob(token: str, top: int) -> dict[str, Any]:
    """A deterministic entry: the chosen token at -0.01, then ``top`` - 1 alternatives below it."""
    alternatives = [{"token": token, "logprob": -0.01, "bytes": list(token.encode())}]
    alternatives += [{"token": f" alt{j}", "logprob": -1.0 - j, "bytes": list(f" alt{j}".encode())}
                     for j in range(1, top)]
    return {"token": token, "logprob": -0.01, "bytes": list(token.encode()), "top_logprobs": alternatives[:top]}


def _logprobs_wanted(body: dict[str, Any]) -> int | None:
    """``None`` without ``logprobs``; else how many ``top_logprobs`` per token (0..20)."""
    if body.get("logprobs") is not True:
        return None
    top = body.get("top_logprobs")
    return top if isinstance(top, int) and not isinstance(top, bool) and 0 <= top <= 20 else 0


def _choices(body: dict[str, Any]) -> int:
    n = body.get("n")
    return n if isinstance(n, int) and not isinstance(n, bool) and 1 <= n <= 128 else 1


def _usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}


def chat_body(answer: Answer, body: dict[str, Any], *, id: str, created: int, model: str,
              prompt_tokens: int) -> bytes:
    """One ``chat.completion`` with ``n`` identical choices (the mock is deterministic)."""
    message: dict[str, Any] = {"role": "assistant", "content": None if answer.tool else answer.text,
                               "refusal": None}
    if answer.tool is not None:
        message["tool_calls"] = [{"id": answer.tool.id, "type": "function",
                                  "function": {"name": answer.tool.name, "arguments": answer.text}}]
    top = _logprobs_wanted(body)
    logprobs = None
    if top is not None and answer.tool is None:
        logprobs = {"content": [_logprob(p, top) for p in answer.pieces], "refusal": None}
    n = _choices(body)
    choices = [{"index": k, "message": message, "logprobs": logprobs, "finish_reason": answer.finish_reason}
               for k in range(n)]
    return _encode({"id": id, "object": "chat.completion", "created": created, "model": model, "choices": choices,
                    "usage": _usage(prompt_tokens, len(answer.pieces) * n),
                    "system_fingerprint": SYSTEM_FINGERPRINT})


def chat_frames(answer: Answer, body: dict[str, Any], *, id: str, created: int, model: str,
                prompt_tokens: int, include_usage: bool) -> Frames:
    """The role chunk, one chunk per token per choice, the finish chunks, usage when asked, ``[DONE]``."""
    n = _choices(body)
    top = _logprobs_wanted(body)
    tool = answer.tool

    def frame(k: int, delta: dict[str, Any], finish: str | None = None, logprobs: Any = None) -> bytes:
        data = _encode({"id": id, "object": "chat.completion.chunk", "created": created, "model": model,
                        "system_fingerprint": SYSTEM_FINGERPRINT,
                        "choices": [{"index": k, "delta": delta, "logprobs": logprobs, "finish_reason": finish}],
                        "usage": None})
        if not include_usage:
            data = data[: -len(_NULL_USAGE_SUFFIX)] + b"}"
        return sse.event(data)

    def piece(i: int) -> bytes:
        text = answer.pieces[i]
        out = []
        for k in range(n):
            if tool is None:
                logprobs = {"content": [_logprob(text, top)], "refusal": None} if top is not None else None
                out.append(frame(k, {"content": text}, logprobs=logprobs))
            else:
                call: dict[str, Any] = {"index": 0, "function": {"arguments": text}}
                if i == 0:
                    call = {"index": 0, "id": tool.id, "type": "function",
                            "function": {"name": tool.name, "arguments": text}}
                out.append(frame(k, {"tool_calls": [call]}))
        return b"".join(out)

    head = [frame(k, {"role": "assistant", "content": None if tool else ""}) for k in range(n)]
    tail = [frame(k, {}, answer.finish_reason) for k in range(n)]
    if include_usage:
        usage = _usage(prompt_tokens, len(answer.pieces) * n)
        tail.append(sse.event(_encode({"id": id, "object": "chat.completion.chunk", "created": created,
                                       "model": model, "system_fingerprint": SYSTEM_FINGERPRINT, "choices": [],
                                       "usage": usage})))
    tail.append(sse.DONE)
    return head, piece, tail


# --------------------------------------------------------------------------------------- Anthropic


def anthropic_message(answer: Answer, *, id: str, model: str, input_tokens: int) -> bytes:
    tool = answer.tool
    if tool is not None:
        content: str | list[dict[str, Any]] = [{"type": "tool_use", "id": tool.id, "name": tool.name,
                                                "input": msgspec.json.decode(tool.arguments)}]
    else:
        content = answer.text
    return anthropic.message(id=id, model=model, content=content, stop_reason=stop_reason(answer),
                             stop_sequence=answer.stop_sequence, input_tokens=input_tokens,
                             output_tokens=len(answer.pieces))


def anthropic_frames(answer: Answer, *, id: str, model: str, input_tokens: int) -> Frames:
    """message_start, one block (text or tool_use) with its deltas, then the end."""
    tool = answer.tool
    start = anthropic.message_start(id=id, model=model, input_tokens=input_tokens)
    if tool is None:
        head = [start, anthropic.text_block_start(0), anthropic.PING]

        def piece(i: int) -> bytes:
            return anthropic.text_delta(0, answer.pieces[i])
    else:
        head = [start, anthropic.tool_use_block_start(0, id=tool.id, name=tool.name), anthropic.PING]

        def piece(i: int) -> bytes:
            return anthropic.input_json_delta(0, answer.pieces[i])

    tail = [anthropic.content_block_stop(0),
            anthropic.message_delta(stop_reason=stop_reason(answer), stop_sequence=answer.stop_sequence,
                                    output_tokens=len(answer.pieces)),
            anthropic.MESSAGE_STOP]
    return head, piece, tail
