"""OpenAI's legacy completions (``POST /v1/completions``): request validation and the mock's bodies.

Still common with self-hosted servers (vLLM, TGI, llama.cpp): a raw prompt, no chat template. The
gateway passes these requests through to OpenAI-compatible deployments untouched, like chat (the
same usage handling for streams); it reads only what it acts on. Anthropic has no such endpoint,
and rewriting a raw prompt into a chat turn would change what the model sees, so an Anthropic
deployment refuses it with a 400 naming the operation.
"""

from __future__ import annotations

from typing import Any

import msgspec

from seawall.core.errors import InvalidRequest
from seawall.core.types import Payload
from seawall.providers.openai import SYSTEM_FINGERPRINT, estimate_tokens, load_json_object

__all__ = ["DEFAULT_MAX_TOKENS", "chunk", "completion", "parse_completions"]

#: OpenAI's default ``max_tokens`` for legacy completions (chat has none).
DEFAULT_MAX_TOKENS = 16
_encode = msgspec.json.encode


def _is_prompt(value: Any) -> bool:
    if isinstance(value, str):
        return True
    if not isinstance(value, list) or not value:
        return False
    if all(isinstance(v, str) for v in value):
        return True
    if all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        return True
    return all(isinstance(v, list) and v and all(isinstance(t, int) and not isinstance(t, bool) for t in v)
               for v in value)


def _opt_int(body: dict[str, Any], name: str, minimum: int) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise InvalidRequest(f"'{name}' must be an integer >= {minimum}.", param=name)
    return value


def parse_completions(raw: bytes) -> Payload:
    """Validate a legacy completions body; raise :class:`InvalidRequest` naming the field."""
    body = load_json_object(raw)
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise InvalidRequest("'model' is required and must be a non-empty string.", param="model")
    if not _is_prompt(body.get("prompt")):
        raise InvalidRequest("'prompt' must be a string, an array of strings, an array of tokens or an array"
                             " of token arrays.", param="prompt")
    stream = body.get("stream", False)
    if stream is None:
        stream = False
    if not isinstance(stream, bool):
        raise InvalidRequest("'stream' must be a boolean.", param="stream")
    include_usage = False
    options = body.get("stream_options")
    if options is not None:
        if not isinstance(options, dict) or not stream:
            raise InvalidRequest("'stream_options' must be an object, and only when 'stream' is true.",
                                 param="stream_options")
        include_usage = options.get("include_usage") is True
    max_tokens = _opt_int(body, "max_tokens", 0)
    n = _opt_int(body, "n", 1) or 1
    best_of = _opt_int(body, "best_of", 1) or 1
    prompts = len(body["prompt"]) if isinstance(body["prompt"], list) and not isinstance(body["prompt"][0], int) else 1
    budget = (DEFAULT_MAX_TOKENS if max_tokens is None else max_tokens) * max(n, best_of) * prompts
    return Payload(model=model, body=body, stream=stream, include_usage=include_usage, max_tokens=budget or None,
                   estimated_prompt_tokens=estimate_tokens(raw))


def completion(*, id: str, created: int, model: str, text: str, finish_reason: str, prompt_tokens: int,
               completion_tokens: int) -> bytes:
    """One ``text_completion`` object (the mock's answer)."""
    return _encode({
        "id": id, "object": "text_completion", "created": created, "model": model,
        "system_fingerprint": SYSTEM_FINGERPRINT,
        "choices": [{"index": 0, "text": text, "logprobs": None, "finish_reason": finish_reason}],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                  "total_tokens": prompt_tokens + completion_tokens},
    })


def chunk(*, id: str, created: int, model: str, text: str = "", finish_reason: str | None = None,
          usage: dict[str, int] | None = None, no_choices: bool = False) -> bytes:
    """One streamed ``text_completion`` chunk (OpenAI streams the same object, piece by piece)."""
    out: dict[str, Any] = {"id": id, "object": "text_completion", "created": created, "model": model,
                           "system_fingerprint": SYSTEM_FINGERPRINT}
    out["choices"] = [] if no_choices else [{"index": 0, "text": text, "logprobs": None,
                                             "finish_reason": finish_reason}]
    out["usage"] = usage
    return _encode(out)
