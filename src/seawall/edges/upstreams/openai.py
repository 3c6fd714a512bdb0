"""The OpenAI-compatible upstream (OpenAI, Azure, vLLM, Ollama, TGI, the mock): chat and embeddings.

An OpenAI client's request is forwarded as its raw bytes unless the model name must change or a
stream needs ``stream_options.include_usage`` (the gateway always wants usage; the client's stream
then has the usage chunk removed again). This is the benchmarked fast path: no JSON is decoded on
the way back except the one chunk that carries usage.

An Anthropic client's Messages request is translated to chat completions
(:mod:`seawall.providers.translate`), and the answer back: a ``message`` object, or the Anthropic
event sequence built chunk by chunk by :class:`OpenAIToAnthropicStream`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import msgspec

from seawall.core.errors import GatewayError, InvalidRequest, UpstreamError
from seawall.core.types import Operation, Request, Response, Usage
from seawall.edges.upstreams.base import (
    OPENAI_RATE_LIMITS,
    HttpUpstream,
    UpstreamSettings,
    decode_object,
    finish,
    protocol_error,
    untranslatable,
)
from seawall.edges.upstreams.http1 import HttpResponse
from seawall.env import Clock
from seawall.providers.sse import DONE, EventSplitter
from seawall.providers.translate import (
    OpenAIToAnthropicStream,
    Untranslatable,
    anthropic_request_to_openai,
    openai_response_to_anthropic,
)

__all__ = ["OpenAIUpstream"]

# A Responses request reaches the upstream already translated to chat completions (edges/responses.py).
_PATHS = {Operation.CHAT: "/chat/completions", Operation.RESPONSES: "/chat/completions",
          Operation.COMPLETIONS: "/completions", Operation.EMBEDDINGS: "/embeddings",
          Operation.MODERATIONS: "/moderations"}


class _UsageView(msgspec.Struct):
    prompt_tokens: int = 0
    completion_tokens: int = 0


class _BodyView(msgspec.Struct):
    usage: _UsageView | None = None


class _ChunkView(msgspec.Struct):
    usage: _UsageView | None = None
    choices: list[Any] = []


_body_view = msgspec.json.Decoder(_BodyView)
_chunk_view = msgspec.json.Decoder(_ChunkView)


def _usage(view: _UsageView | None) -> Usage | None:
    return None if view is None else Usage(view.prompt_tokens, view.completion_tokens)


def _has_usage(event: bytes) -> bool:
    return b'"usage":{' in event or b'"usage": {' in event


class OpenAIUpstream(HttpUpstream):
    rate_limits = OPENAI_RATE_LIMITS

    def __init__(self, settings: UpstreamSettings, *, clock: Clock) -> None:
        super().__init__(settings, clock=clock)
        auth = {"authorization": f"Bearer {settings.api_key}"} if settings.api_key else {}
        self._headers = {"content-type": "application/json", **auth, **dict(settings.headers)}

    async def send(self, request: Request) -> Response:
        headers = {**self._headers, "x-request-id": request.id}
        if request.api == "openai":
            return await self.exchange(
                request, self.settings.base_url + _PATHS[request.operation], self._body(request), headers,
                stream=request.payload.stream, complete=self._complete,
                events=lambda resp, response: self._events(resp, response, request.payload.include_usage),
            )
        if request.api == "anthropic":
            return await self._send_anthropic(request, headers)
        raise InvalidRequest(f"Deployment '{self.name}' cannot serve the '{request.api}' API.")

    # -- OpenAI clients: forwarded ----------------------------------------------------------------

    def _body(self, request: Request) -> bytes:
        payload = request.payload
        target = self.settings.model
        rewrite_model = target is not None and target != payload.model
        want_usage = payload.stream and not payload.include_usage
        if not rewrite_model and not want_usage:
            return request.raw
        body = dict(payload.body)
        if rewrite_model:
            body["model"] = target
        if want_usage:
            body["stream_options"] = {**(body.get("stream_options") or {}), "include_usage": True}
        return msgspec.json.encode(body)

    def _complete(self, body: bytes) -> tuple[bytes, Usage | None]:
        try:
            return body, _usage(_body_view.decode(body).usage)
        except msgspec.DecodeError:
            raise self.malformed() from None

    async def _events(self, resp: HttpResponse, response: Response,
                      client_wants_usage: bool) -> AsyncIterator[bytes]:
        splitter = EventSplitter()
        done = False
        try:
            with self.reading_stream():
                async for data in resp.chunks():
                    for ev in splitter.feed(data):
                        if ev == DONE:
                            done = True
                            yield ev
                            continue
                        if _has_usage(ev):
                            payload = ev[ev.find(b"{"):ev.rfind(b"}") + 1]
                            try:
                                view = _chunk_view.decode(payload)
                            except msgspec.DecodeError:
                                view = None
                            if view is not None and view.usage is not None:
                                response.usage = _usage(view.usage)
                                if not client_wants_usage and not view.choices:
                                    continue
                        if not client_wants_usage:
                            ev = ev.replace(b',"usage":null', b"")
                        if ev.startswith(b'data: {"error"'):
                            raise self._stream_failed(ev)
                        yield ev
                    if done:
                        break
                if not done:
                    raise self.truncated()
        finally:
            finish(resp, done)

    def _stream_failed(self, event: bytes) -> UpstreamError:
        return UpstreamError(f"Upstream '{self.name}' failed mid-stream: {_error_message(event)}",
                             reason="upstream_stream_error", error_kind="read")

    # -- Anthropic clients: translated ------------------------------------------------------------

    async def _send_anthropic(self, request: Request, headers: dict[str, str]) -> Response:
        payload = request.payload
        model = self.settings.model or payload.model
        try:
            body = anthropic_request_to_openai(payload.body)
        except Untranslatable as err:
            raise untranslatable(self.name, "OpenAI chat completions", err) from None
        body["model"] = model
        msg_id = f"msg_{request.id}"

        def complete(data: bytes) -> tuple[bytes, Usage | None]:
            obj = decode_object(data)
            if obj is None:
                raise self.malformed()
            try:
                message = openai_response_to_anthropic(obj, model=obj.get("model") or model, id=msg_id)
            except GatewayError as err:
                raise protocol_error(self.name, err) from None
            usage = obj.get("usage") or {}
            return msgspec.json.encode(message), Usage(usage.get("prompt_tokens") or 0,
                                                       usage.get("completion_tokens") or 0)

        def events(resp: HttpResponse, response: Response) -> AsyncIterator[bytes]:
            translator = OpenAIToAnthropicStream(model, msg_id, input_tokens=payload.estimated_prompt_tokens)
            return self._translated_events(resp, response, translator)

        return await self.exchange(
            request, self.settings.base_url + _PATHS[Operation.CHAT], msgspec.json.encode(body), headers,
            stream=payload.stream, complete=complete, events=events,
        )

    async def _translated_events(self, resp: HttpResponse, response: Response,
                                 translator: OpenAIToAnthropicStream) -> AsyncIterator[bytes]:
        splitter = EventSplitter()
        try:
            with self.reading_stream():
                async for data in resp.chunks():
                    for ev in splitter.feed(data):
                        if ev.startswith(b'data: {"error"'):
                            raise self._stream_failed(ev)
                        try:
                            out = translator.feed(ev)
                        except GatewayError as err:
                            raise protocol_error(self.name, err) from None
                        if _has_usage(ev):
                            response.usage = translator.usage
                        if out:
                            yield b"".join(out)
                        if translator.done:
                            return
                raise self.truncated()
        finally:
            finish(resp, translator.done)


def _error_message(event: bytes) -> str:
    try:
        err = msgspec.json.decode(event[event.find(b"{"):]).get("error", {})
        return str(err.get("message") or "unknown error")[:300]
    except (msgspec.DecodeError, AttributeError):
        return "unknown error"
