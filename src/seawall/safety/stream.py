"""``guard_out`` on a stream: events pass through an :class:`~seawall.safety.window.OutputWindow`
and leave only once their text is checked; a flag ends the stream cleanly in the client's format.

Events are held whole (never re-cut), so what the client gets is byte for byte what the upstream
sent, only later. When stage 1 flags a window, the held events are dropped, the upstream stream is
closed, and the dialect's content-filter stop is sent instead: a chat or completions chunk with
``finish_reason: content_filter`` and ``[DONE]``; for Anthropic clients, ``stop_reason: refusal``
after closing any content block the client saw open, then ``message_stop``.
"""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import msgspec

from seawall.providers import anthropic, completions, openai
from seawall.providers.sse import DONE, EventSplitter, data_of, event
from seawall.safety.window import OutputWindow

__all__ = ["guard_stream"]

_decode = msgspec.json.decode


class _State:
    """What the client has been sent so far, to end the stream validly."""

    __slots__ = ("created", "id", "input_tokens", "model", "open_block", "output_chars", "started")

    def __init__(self) -> None:
        self.id = "chatcmpl-guard"
        self.model = ""
        self.created = 0
        self.input_tokens = 0
        self.started = False  # anthropic: message_start sent
        self.open_block: int | None = None  # anthropic: a content block the client saw open
        self.output_chars = 0


def _text(dialect: str, framed: bytes, meta: _State) -> tuple[str, dict[str, Any] | None]:
    data = data_of(framed)
    if not data.startswith(b"{"):
        return "", None
    try:
        obj = _decode(data)
    except msgspec.DecodeError:
        return "", None
    if not isinstance(obj, dict):
        return "", None
    if dialect == "anthropic":
        kind = obj.get("type")
        if kind == "content_block_delta":
            delta = obj.get("delta") or {}
            return (delta.get("text") or "") if delta.get("type") == "text_delta" else "", obj
        if kind == "message_start":
            msg = obj.get("message") or {}
            meta.id, meta.model = str(msg.get("id") or meta.id), str(msg.get("model") or "")
            meta.input_tokens = int((msg.get("usage") or {}).get("input_tokens") or 0)
        return "", obj
    meta.id = str(obj.get("id") or meta.id)
    meta.model = str(obj.get("model") or meta.model)
    meta.created = int(obj.get("created") or meta.created)
    choices = obj.get("choices") or []
    if not choices or not isinstance(choices[0], dict):
        return "", obj
    if dialect == "completions":
        return choices[0].get("text") or "", obj
    return (choices[0].get("delta") or {}).get("content") or "", obj


def _sent(dialect: str, obj: dict[str, Any] | None, meta: _State) -> None:
    if dialect != "anthropic" or obj is None:
        return
    kind = obj.get("type")
    if kind == "message_start":
        meta.started = True
    elif kind == "content_block_start":
        meta.open_block = int(obj.get("index") or 0)
    elif kind == "content_block_stop":
        meta.open_block = None


def _closing(dialect: str, meta: _State) -> bytes:
    if dialect == "anthropic":
        out = []
        if not meta.started:
            out.append(anthropic.message_start(id=meta.id, model=meta.model, input_tokens=meta.input_tokens))
        if meta.open_block is not None:
            out.append(anthropic.content_block_stop(meta.open_block))
        out.append(anthropic.message_delta(stop_reason="refusal", output_tokens=max(1, meta.output_chars // 4)))
        out.append(anthropic.MESSAGE_STOP)
        return b"".join(out)
    if dialect == "completions":
        chunk = completions.chunk(id=meta.id, created=meta.created, model=meta.model,
                                  finish_reason="content_filter")
    else:
        chunk = openai.chunk(id=meta.id, created=meta.created, model=meta.model, finish_reason="content_filter")
    return event(chunk) + DONE


async def guard_stream(inner: AsyncIterator[bytes], window: OutputWindow, dialect: str,
                       on_flag: Callable[[Sequence[Any]], None]) -> AsyncIterator[bytes]:
    """``inner`` (framed SSE bytes of ``dialect``: chat, completions or anthropic), checked."""
    splitter = EventSplitter()
    held: deque[tuple[int, bytes, dict[str, Any] | None]] = deque()
    meta = _State()
    try:
        async for data in inner:
            out: list[bytes] = []
            for framed in splitter.feed(data):
                text, obj = _text(dialect, framed, meta)
                if text:
                    found = window.feed(text)
                    if found:
                        on_flag(found)
                        yield _closing(dialect, meta)
                        return
                held.append((window.total, framed, obj))
                released = window.released
                while held and held[0][0] <= released:
                    _, ev, ev_obj = held.popleft()
                    _sent(dialect, ev_obj, meta)
                    out.append(ev)
                meta.output_chars = released
            if out:
                yield b"".join(out)
        found = window.finish()
        if found:
            on_flag(found)
            yield _closing(dialect, meta)
            return
        if held:
            yield b"".join(ev for _, ev, _ in held)
        if splitter.pending:
            yield splitter.pending
    finally:
        aclose = getattr(inner, "aclose", None)
        if aclose is not None:
            await aclose()
