"""Chat completion chunks in, Responses API stream events out: one stateful, pure translator.

The Responses API streams typed events, each with a ``sequence_number`` counting from 0:
``response.created`` and ``response.in_progress`` first; for each output item
``response.output_item.added``, its content (``response.content_part.added``,
``response.output_text.delta``... ``response.output_text.done``, ``response.content_part.done``
for a message; ``response.function_call_arguments.delta``... ``.done`` for a function call) and
``response.output_item.done``; last ``response.completed`` (``response.incomplete`` when the
token limit or a content filter cut it short) with the whole response and its usage. A failure
after the start ends the stream with ``error`` and ``response.failed`` (:meth:`fail`).

Chat streams text first and tool calls after it, so at most one item is open at a time: a new
item closes the one before. Only choice 0 is read (the Responses API has no ``n``). The caller
asks the upstream for usage (``stream_options.include_usage``), which arrives just before
``[DONE]``; the final events go out on ``[DONE]``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec

from seawall.core.errors import GatewayError, UpstreamError
from seawall.providers.responses import (
    ResponsesCall,
    function_call_item,
    item_ids,
    message_item,
    response_error,
    response_object,
    status_of,
    usage_from_chat,
)
from seawall.providers.sse import data_of, event

__all__ = ["ChatToResponsesStream"]

_encode = msgspec.json.encode
_decode = msgspec.json.decode


class ChatToResponsesStream:
    """Feed framed ``chat.completion.chunk`` events; get framed Responses events back.

    ``now`` gives unix seconds for ``completed_at``. After ``done``, :attr:`response` is the final
    ``response`` object (what the edge stores). State is per stream.
    """

    __slots__ = ("_args", "_call", "_fc_prefix", "_item", "_msg_id", "_now", "_output", "_reason",
                 "_seq", "_service_tier", "_text", "_tools", "_usage", "created_at", "done", "id", "model",
                 "response")

    def __init__(self, call: ResponsesCall, *, id: str, created_at: int, now: Callable[[], int]) -> None:
        self._call = call
        self.id = id
        self.created_at = created_at
        self.model = call.model
        self._now = now
        self._seq = 0
        self._msg_id, self._fc_prefix = item_ids(id)
        self._output: list[dict[str, Any]] = []
        self._item: dict[str, Any] | None = None  # the open output item
        self._text: list[str] = []
        self._args: list[str] = []
        self._tools: dict[int, int] = {}  # chat tool_calls index -> output index
        self._usage: dict[str, Any] | None = None
        self._reason: str | None = None
        self._service_tier: str | None = None
        self.done = False
        self.response: dict[str, Any] | None = None

    # -- framing -------------------------------------------------------------------------------
    def _emit(self, out: list[bytes], kind: str, **fields: Any) -> None:
        out.append(event(_encode({"type": kind, **fields, "sequence_number": self._seq}), kind))
        self._seq += 1

    def _snapshot(self, status: str, **extra: Any) -> dict[str, Any]:
        return response_object(self._call, id=self.id, created_at=self.created_at, model=self.model,
                               status=status, output=list(self._output), service_tier=self._service_tier,
                               usage=self._usage, **extra)

    def _start(self, out: list[bytes]) -> None:
        """``response.created`` and ``response.in_progress``, before the first upstream chunk's
        content (the first chunk names the model that answers)."""
        if self._seq == 0:
            snapshot = self._snapshot("in_progress")
            self._emit(out, "response.created", response=snapshot)
            self._emit(out, "response.in_progress", response=snapshot)

    # -- items ---------------------------------------------------------------------------------
    def _close(self, out: list[bytes]) -> None:
        item = self._item
        if item is None:
            return
        index = len(self._output) - 1
        if item["type"] == "message":
            text = "".join(self._text)
            part = {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
            self._emit(out, "response.output_text.done", item_id=item["id"], output_index=index,
                       content_index=0, text=text, logprobs=[])
            self._emit(out, "response.content_part.done", item_id=item["id"], output_index=index,
                       content_index=0, part=part)
            done = message_item(item["id"], text, None, "completed")
        else:
            arguments = "".join(self._args)
            self._emit(out, "response.function_call_arguments.done", item_id=item["id"], name=item["name"],
                       output_index=index, arguments=arguments)
            done = function_call_item(item["id"], item["call_id"], item["name"], arguments, "completed")
        self._output[index] = done
        self._emit(out, "response.output_item.done", output_index=index, item=done)
        self._item = None

    def _open(self, out: list[bytes], item: dict[str, Any]) -> int:
        self._close(out)
        self._output.append(item)
        self._item = item
        index = len(self._output) - 1
        self._emit(out, "response.output_item.added", output_index=index, item=item)
        return index

    def _on_text(self, out: list[bytes], text: str) -> None:
        item = self._item
        if item is None or item["type"] != "message":
            item = message_item(self._msg_id, None, None, "in_progress")
            index = self._open(out, item)
            self._text = []
            part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
            self._emit(out, "response.content_part.added", item_id=item["id"], output_index=index,
                       content_index=0, part=part)
        self._text.append(text)
        self._emit(out, "response.output_text.delta", item_id=item["id"], output_index=len(self._output) - 1,
                   content_index=0, delta=text, logprobs=[])

    def _on_tool(self, out: list[bytes], call: dict[str, Any]) -> None:
        k = call.get("index", 0)
        fn = call.get("function")
        fn = fn if isinstance(fn, dict) else {}
        index = self._tools.get(k)
        if index is None:
            item = function_call_item(f"{self._fc_prefix}_{k}", str(call.get("id") or f"call_{self.id}_{k}"),
                                      str(fn.get("name") or ""), "", "in_progress")
            index = self._tools[k] = self._open(out, item)
            self._args = []
        elif index != len(self._output) - 1 or self._item is None:
            raise UpstreamError("Upstream interleaved tool call deltas.", code="bad_stream_event")
        args = fn.get("arguments")
        if isinstance(args, str) and args:
            self._args.append(args)
            self._emit(out, "response.function_call_arguments.delta", item_id=self._output[index]["id"],
                       output_index=index, delta=args)

    # -- input ---------------------------------------------------------------------------------
    def feed(self, framed: bytes) -> list[bytes]:
        """One upstream chat event in, zero or more framed Responses events out."""
        if self.done:
            return []
        out: list[bytes] = []
        data = data_of(framed)
        if data == b"[DONE]":
            self._start(out)
            self._finish(out)
            return out
        try:
            obj = _decode(data) if data else None
        except msgspec.DecodeError:
            raise UpstreamError("Upstream sent an undecodable chunk.", code="bad_stream_event") from None
        if not isinstance(obj, dict):
            return out
        if isinstance(obj.get("model"), str):
            self.model = obj["model"]
        if isinstance(obj.get("service_tier"), str):
            self._service_tier = obj["service_tier"]
        usage = usage_from_chat(obj.get("usage"))
        if usage is not None:
            self._usage = usage
        self._start(out)
        for choice in obj.get("choices") or []:
            if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") or {}
            if not isinstance(delta, dict):
                raise UpstreamError("Upstream sent a chunk whose delta is not an object.", code="bad_stream_event")
            text = delta.get("content") or delta.get("refusal")
            if isinstance(text, str) and text:
                self._on_text(out, text)
            calls = delta.get("tool_calls") or []
            for call in calls if isinstance(calls, list) else []:
                if isinstance(call, dict):
                    self._on_tool(out, call)
            if choice.get("finish_reason"):
                self._reason = choice["finish_reason"]
        return out

    def _finish(self, out: list[bytes]) -> None:
        self._close(out)
        status, reason = status_of(self._reason)
        now = self._now()
        self.response = self._snapshot(status, incomplete_reason=reason,
                                       completed_at=now if status == "completed" else None)
        kind = "response.completed" if status == "completed" else "response.incomplete"
        self._emit(out, kind, response=self.response)
        self.done = True

    def fail(self, err: GatewayError) -> list[bytes]:
        """The events that end a stream which failed after it started: ``error``, then
        ``response.failed`` with what was produced so far (open items are left in progress)."""
        if self.done:
            return []
        out: list[bytes] = []
        self._start(out)
        self._emit(out, "error", code=err.code, message=err.message, param=err.param)
        self.response = self._snapshot("failed", error=response_error(err))
        self._emit(out, "response.failed", response=self.response)
        self.done = True
        return out
