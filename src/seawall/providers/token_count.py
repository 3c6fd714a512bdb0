"""``POST /v1/messages/count_tokens``: validation and the gateway's estimate of a prompt's tokens.

Clients (coding agents above all) call this before every turn to decide when to compact a
conversation, so it must answer at once and never queue behind generation. The gateway has no
model's tokenizer, and the deployments behind one model name may be of several providers, so the
answer is an estimate from the text the model would read (about 4 characters a token, plus a few
tokens of framing per message and per tool), with images and documents at a flat cost. It errs
high rather than low: a client that compacts a little early loses nothing, one that overflows the
context window fails.
"""

from __future__ import annotations

import math
from typing import Any

import msgspec

from seawall.providers.anthropic import _check_messages, _check_system, _check_tools, _invalid
from seawall.providers.openai import BodyLimits, load_json_object

__all__ = ["estimate_input_tokens", "parse_count_tokens"]

CHARS_PER_TOKEN = 3.5  # below English's ~4, so code and non-English text are not underestimated
MESSAGE_OVERHEAD_TOKENS = 4
TOOL_OVERHEAD_TOKENS = 8
MEDIA_TOKENS = 1600  # an image at Anthropic's recommended ~1.15 megapixels; documents alike
_encode = msgspec.json.encode


def parse_count_tokens(raw: bytes) -> dict[str, Any]:
    """Validate a count_tokens body (a Messages body without ``max_tokens``); the body back."""
    body = load_json_object(raw)
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise _invalid("model", "is required and must be a non-empty string")
    _check_messages(body.get("messages"), BodyLimits().max_messages)
    _check_system(body.get("system"))
    _check_tools(body.get("tools"))
    return body


def _text_chars(content: Any) -> tuple[int, int]:
    """(characters of text the model reads, media blocks) in a string or a list of blocks."""
    if isinstance(content, str):
        return len(content), 0
    if not isinstance(content, list):
        return 0, 0
    chars = media = 0
    for block in content:
        if not isinstance(block, dict):
            continue
        kind = block.get("type")
        if kind == "text":
            chars += len(block.get("text") or "")
        elif kind in ("image", "document"):
            media += 1
        elif kind == "tool_use":
            chars += len(str(block.get("name") or "")) + len(_encode(block.get("input") or {}))
        elif kind == "tool_result":
            more, more_media = _text_chars(block.get("content"))
            chars, media = chars + more, media + more_media
        elif kind in ("thinking", "redacted_thinking"):
            continue  # earlier turns' thinking is not counted by Anthropic either
        else:
            chars += len(_encode(block))
    return chars, media


def estimate_input_tokens(body: dict[str, Any]) -> int:
    """The estimated input tokens of a validated Messages (or count_tokens) body."""
    chars, media = _text_chars(body.get("system"))
    messages = body.get("messages") or []
    for message in messages:
        more, more_media = _text_chars(message.get("content"))
        chars, media = chars + more, media + more_media
    tools = body.get("tools") or []
    for tool in tools:
        chars += len(_encode(tool))
    tokens = (math.ceil(chars / CHARS_PER_TOKEN) + MESSAGE_OVERHEAD_TOKENS * len(messages)
              + TOOL_OVERHEAD_TOKENS * len(tools) + MEDIA_TOKENS * media)
    return max(1, tokens)
