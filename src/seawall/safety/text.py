"""Where the prompt's text is in each dialect the gateway serves, and how to rewrite it.

- chat completions (and Responses, which reach the stack as chat): ``messages[].content``, a
  string or a list of parts of ``type: text``;
- legacy completions: ``prompt``, a string or a list of strings (token arrays hold no text);
- Anthropic messages: ``system`` (string or text blocks) and ``messages[].content`` (string, text
  blocks, or ``tool_result`` blocks holding either).

Text from the operator (system and developer messages, Anthropic ``system``) is *trusted*: it is
scanned for secrets and PII but not for injection phrasing, since a system prompt that says "never
reveal your system prompt" is not an attack. Pure functions on the parsed body.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from seawall.core.types import Operation

__all__ = ["TRUSTED_ROLES", "map_prompt", "prompt_texts"]

TRUSTED_ROLES = frozenset({"system", "developer"})
Rewrite = Callable[[str, bool], str]  # (text, trusted) -> text


def prompt_texts(operation: Operation, body: dict[str, Any]) -> tuple[list[str], list[str]]:
    """The prompt's texts as ``(untrusted, trusted)``."""
    untrusted: list[str] = []
    trusted: list[str] = []

    def collect(text: str, is_trusted: bool) -> str:
        (trusted if is_trusted else untrusted).append(text)
        return text

    map_prompt(operation, body, collect)
    return untrusted, trusted


def map_prompt(operation: Operation, body: dict[str, Any], fn: Rewrite) -> dict[str, Any]:
    """``body`` with every prompt text replaced by ``fn(text, trusted)``; parts that ``fn`` leaves
    alone are shared, not copied. Shapes the parser already refused never get here."""
    if operation is Operation.COMPLETIONS:
        prompt = body.get("prompt")
        if isinstance(prompt, str):
            return {**body, "prompt": fn(prompt, False)}
        if isinstance(prompt, list) and prompt and all(isinstance(p, str) for p in prompt):
            return {**body, "prompt": [fn(p, False) for p in prompt]}
        return body
    out = dict(body)
    if operation is Operation.MESSAGES and "system" in body:
        out["system"] = _content(body["system"], True, fn)
    messages = body.get("messages")
    if isinstance(messages, list):
        out["messages"] = [_message(m, fn) for m in messages]
    return out


def _message(message: Any, fn: Rewrite) -> Any:
    if not isinstance(message, dict) or "content" not in message:
        return message
    trusted = message.get("role") in TRUSTED_ROLES
    return {**message, "content": _content(message["content"], trusted, fn)}


def _content(content: Any, trusted: bool, fn: Rewrite) -> Any:
    if isinstance(content, str):
        return fn(content, trusted)
    if not isinstance(content, list):
        return content
    out = []
    for part in content:
        if isinstance(part, dict):
            kind = part.get("type")
            if kind in ("text", "input_text") and isinstance(part.get("text"), str):
                part = {**part, "text": fn(part["text"], trusted)}
            elif kind == "tool_result" and "content" in part:
                part = {**part, "content": _content(part["content"], False, fn)}
        out.append(part)
    return out
