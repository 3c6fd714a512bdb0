"""The Anthropic upstream: ``POST {base_url}/messages`` with ``x-api-key`` and ``anthropic-version``.

An Anthropic client's request is native: its raw bytes go through (re-encoded only to rename the
model), the answer comes back untouched, and usage is read on the way past (the ``usage`` of a
``message``; in a stream, ``message_start`` and the cumulative ``message_delta``).

An OpenAI client's chat request is translated (:mod:`seawall.providers.translate`); a feature
Anthropic cannot express raises a 400 :class:`Untranslatable` naming it, before anything is sent.
The answer comes back as a ``chat.completion``, or as chunks built by
:class:`AnthropicToOpenAIStream`, with the usage chunk only if the client asked for it. Anthropic
has no embeddings endpoint and no legacy completions: such a request is a 400.

Anthropic's overload answers (429 ``rate_limit_error``, 529 ``overloaded_error``) become
:class:`Overloaded` with ``upstream_status``, before the first byte and also as ``error`` events
mid-stream, so neither ever counts against the breaker.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import msgspec

from seawall.core.errors import GatewayError, InvalidRequest, Overloaded, UpstreamError
from seawall.core.types import Operation, Request, Response, Usage
from seawall.edges.upstreams.base import (
    ANTHROPIC_RATE_LIMITS,
    HttpUpstream,
    UpstreamSettings,
    decode_object,
    finish,
    protocol_error,
    untranslatable,
    with_headroom,
)
from seawall.edges.upstreams.http1 import HttpResponse
from seawall.env import Clock
from seawall.providers.sse import EventSplitter, data_of
from seawall.providers.translate import (
    AnthropicToOpenAIStream,
    Untranslatable,
    anthropic_response_to_openai,
    openai_request_to_anthropic,
)

__all__ = ["ANTHROPIC_VERSION", "AnthropicUpstream"]

ANTHROPIC_VERSION = "2023-06-01"


class _UsageView(msgspec.Struct):
    input_tokens: int | None = None
    output_tokens: int | None = None
    cache_creation_input_tokens: int | None = None
    cache_read_input_tokens: int | None = None


class _MessageView(msgspec.Struct):
    usage: _UsageView | None = None


class _EventView(msgspec.Struct):
    message: _MessageView | None = None  # message_start
    usage: _UsageView | None = None  # message_delta


class _ErrorDetail(msgspec.Struct):
    type: str = "api_error"
    message: str = "unknown error"


class _ErrorView(msgspec.Struct):
    error: _ErrorDetail | None = None


_message_view = msgspec.json.Decoder(_MessageView)
_event_view = msgspec.json.Decoder(_EventView)
_error_view = msgspec.json.Decoder(_ErrorView)


def _merge_usage(previous: Usage | None, view: _UsageView | None) -> Usage | None:
    """Usage so far: input counts (cache reads and writes included) when given, output replaced."""
    if view is None:
        return previous
    prompt = previous.prompt_tokens if previous is not None else 0
    completion = previous.completion_tokens if previous is not None else 0
    if view.input_tokens is not None:
        prompt = (view.input_tokens + (view.cache_creation_input_tokens or 0)
                  + (view.cache_read_input_tokens or 0))
    if view.output_tokens is not None:
        completion = view.output_tokens
    return Usage(prompt, completion)


def _event_usage(previous: Usage | None, event: bytes) -> Usage | None:
    try:
        view = _event_view.decode(data_of(event))
    except msgspec.DecodeError:
        return previous
    return _merge_usage(previous, view.usage if view.message is None else view.message.usage)


def _is(event: bytes, name: bytes) -> bool:
    return event.startswith(name)


class AnthropicUpstream(HttpUpstream):
    rate_limits = ANTHROPIC_RATE_LIMITS

    def __init__(self, settings: UpstreamSettings, *, clock: Clock) -> None:
        super().__init__(settings, clock=clock)
        auth = {"x-api-key": settings.api_key} if settings.api_key else {}
        self._headers = {"content-type": "application/json", "anthropic-version": ANTHROPIC_VERSION,
                         **auth, **dict(settings.headers)}
        self._url = settings.base_url + "/messages"

    async def send(self, request: Request) -> Response:
        if request.operation is Operation.EMBEDDINGS:
            raise InvalidRequest(
                f"Deployment '{self.name}' speaks the Anthropic Messages API, which has no embeddings.",
                param="model", code="unsupported_operation",
            )
        if request.operation is Operation.COMPLETIONS or request.operation is Operation.MODERATIONS:
            what = "legacy completions; use /v1/chat/completions" if request.operation is Operation.COMPLETIONS \
                else "moderations"
            raise InvalidRequest(f"Deployment '{self.name}' speaks the Anthropic Messages API, which has no {what}.",
                                 param="model", code="unsupported_operation")
        headers = {**self._headers, "x-request-id": request.id}
        if request.api == "anthropic":
            beta = request.headers.get("anthropic-beta")
            if beta:
                headers["anthropic-beta"] = beta
            return await self.exchange(request, self._url, self._body(request), headers,
                                       stream=request.payload.stream, complete=self._complete,
                                       events=self._events)
        if request.api == "openai":
            return await self._send_openai(request, headers)
        raise InvalidRequest(f"Deployment '{self.name}' cannot serve the '{request.api}' API.")

    def _stream_failed(self, event: bytes) -> GatewayError:
        """The error an ``event: error`` mid-stream stands for (overload stays overload)."""
        try:
            detail = _error_view.decode(data_of(event)).error or _ErrorDetail()
        except msgspec.DecodeError:
            detail = _ErrorDetail()
        message = detail.message[:300]
        if detail.type in ("overloaded_error", "rate_limit_error"):
            status = 529 if detail.type == "overloaded_error" else 429
            err = Overloaded(f"Upstream '{self.name}' is overloaded mid-stream: {message}",
                             code="upstream_overloaded", reason=f"upstream_{status}", upstream_status=status)
            return with_headroom(err, 0.0 if status == 429 else None)
        return UpstreamError(f"Upstream '{self.name}' failed mid-stream: {message}",
                             reason="upstream_stream_error", error_kind="read")

    # -- Anthropic clients: native ----------------------------------------------------------------

    def _body(self, request: Request) -> bytes:
        payload = request.payload
        target = self.settings.model
        if target is None or target == payload.model:
            return request.raw
        return msgspec.json.encode({**payload.body, "model": target})

    def _complete(self, body: bytes) -> tuple[bytes, Usage | None]:
        try:
            view = _message_view.decode(body)
        except msgspec.DecodeError:
            raise self.malformed() from None
        return body, _merge_usage(None, view.usage)

    async def _events(self, resp: HttpResponse, response: Response) -> AsyncIterator[bytes]:
        splitter = EventSplitter()
        done = False
        try:
            with self.reading_stream():
                async for data in resp.chunks():
                    for ev in splitter.feed(data):
                        if _is(ev, b"event: message_delta") or _is(ev, b"event: message_start"):
                            response.usage = _event_usage(response.usage, ev)
                        elif _is(ev, b"event: message_stop"):
                            done = True
                        elif _is(ev, b"event: error"):
                            raise self._stream_failed(ev)
                        yield ev
                        if done:
                            return
                raise self.truncated()
        finally:
            finish(resp, done)

    # -- OpenAI clients: translated ---------------------------------------------------------------

    async def _send_openai(self, request: Request, headers: dict[str, str]) -> Response:
        payload = request.payload
        model = self.settings.model or payload.model
        try:
            body = openai_request_to_anthropic(payload.body)
        except Untranslatable as err:
            raise untranslatable(self.name, "Anthropic Messages", err) from None
        body["model"] = model
        completion_id = f"chatcmpl-{request.id}"
        created = int(self.clock.wall())

        def complete(data: bytes) -> tuple[bytes, Usage | None]:
            msg = decode_object(data)
            if msg is None or msg.get("type") != "message":
                raise self.malformed()
            try:
                out = anthropic_response_to_openai(msg, model=msg.get("model") or model, id=completion_id,
                                                   created=created)
            except GatewayError as err:
                raise protocol_error(self.name, err) from None
            usage = out["usage"]
            return msgspec.json.encode(out), Usage(usage["prompt_tokens"], usage["completion_tokens"])

        def events(resp: HttpResponse, response: Response) -> AsyncIterator[bytes]:
            translator = AnthropicToOpenAIStream(model, completion_id, created, payload.include_usage)
            return self._translated_events(resp, response, translator)

        return await self.exchange(request, self._url, msgspec.json.encode(body), headers,
                                   stream=payload.stream, complete=complete, events=events)

    async def _translated_events(self, resp: HttpResponse, response: Response,
                                 translator: AnthropicToOpenAIStream) -> AsyncIterator[bytes]:
        splitter = EventSplitter()
        keep_usage = translator.include_usage
        try:
            with self.reading_stream():
                async for data in resp.chunks():
                    for ev in splitter.feed(data):
                        if _is(ev, b"event: error"):
                            raise self._stream_failed(ev)
                        try:
                            out = translator.feed(ev)
                        except GatewayError as err:
                            raise protocol_error(self.name, err) from None
                        if _is(ev, b"event: message_delta") or _is(ev, b"event: message_start"):
                            response.usage = translator.usage
                        if out:
                            chunk = b"".join(out)
                            # As from OpenAI itself: no "usage" key unless the client asked for it.
                            yield chunk if keep_usage else chunk.replace(b',"usage":null', b"")
                        if translator.done:
                            return
                raise self.truncated()
        finally:
            finish(resp, translator.done)
