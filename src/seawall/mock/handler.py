"""The mock's request handler: OpenAI and Anthropic endpoints, fault injection and admin endpoints.

One dispatch dict instead of a router and middleware keeps a single process at several thousand
requests per second on loopback; fault injection uses the raw transport (``transport.abort()`` for
resets). Run with handler cancellation on (see :mod:`seawall.mock.app`) so a client that goes away
before its answer cancels the handler and is counted in ``stats.cancelled``.

Endpoints: ``POST /v1/chat/completions`` (plain and SSE), ``POST /v1/messages`` (Anthropic
Messages, plain and SSE, requires the ``anthropic-version`` header like the real API),
``POST /v1/embeddings``, ``GET /v1/models``; admin ``GET /mock/stats``, ``GET|POST /mock/config``,
``POST /mock/reset-stats``. Chat and messages share one latency, capacity and fault model; only the
wire format differs (errors too: Anthropic bodies, 529 for overload, on ``/v1/messages``).
Nothing is printed or logged per request.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import msgspec
from aiohttp import web

from seawall.core.errors import GatewayError, InvalidRequest, Overloaded, RateLimited
from seawall.core.types import Payload
from seawall.env import Clock, Rng, SystemClock, SystemRng
from seawall.mock.config import MockConfig
from seawall.mock.model import (
    ChatPlan,
    Fault,
    Overrides,
    choose_fault,
    content_text,
    embedding,
    embedding_inputs,
    encode_embedding,
    input_tokens,
    parse_overrides,
    plan_chat,
    retry_after_s,
    token_text,
)
from seawall.mock.stats import MockStats
from seawall.providers import anthropic, openai, sse

__all__ = ["MockUpstream"]

_JSON = "application/json"
_SSE = "text/event-stream; charset=utf-8"
# ``providers.openai.chunk`` always renders ``"usage": null``; OpenAI only sends that key when the
# client asked for ``stream_options.include_usage``, so plain streams drop it.
_NULL_USAGE_SUFFIX = b',"usage":null}'
_SERVER_ERROR_MESSAGE = "The server had an error while processing your request. Sorry about that!"
_STOP_REASONS = {"stop": "end_turn", "length": "max_tokens"}  # plan finish_reason -> Anthropic's
_encode = msgspec.json.encode
_decode = msgspec.json.decode

Handler = Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]


@dataclass(frozen=True, slots=True)
class _Wire:
    """What differs between the OpenAI and the Anthropic endpoints: error bodies and header names."""

    error_body: Callable[[GatewayError], bytes]
    status_for: Callable[[GatewayError], int]
    limit_header: str
    remaining_header: str


_OPENAI = _Wire(
    openai.error_body, lambda err: err.status, "x-ratelimit-limit-requests", "x-ratelimit-remaining-requests"
)
_ANTHROPIC = _Wire(
    anthropic.error_body,
    anthropic.status_for,
    "anthropic-ratelimit-requests-limit",
    "anthropic-ratelimit-requests-remaining",
)


class MockUpstream:
    """The request handler: shared config, counters, clock and RNG; no per-request state.

    ``clock`` paces latency and tokens (default :class:`SystemClock`); ``rng`` draws one sample per
    chat/messages/embeddings request for fault injection (default ``SystemRng(config.seed)``).
    """

    __slots__ = ("_clock", "_models_body", "_rng", "_routes", "_seq", "config", "stats")

    def __init__(self, config: MockConfig, *, clock: Clock | None = None, rng: Rng | None = None) -> None:
        self.config = config
        self.stats = MockStats()
        self._clock: Clock = clock if clock is not None else SystemClock()
        self._rng: Rng = rng if rng is not None else SystemRng(config.seed)
        self._seq = 0
        self._models_body = _models_body(config)
        self._routes: dict[tuple[str, str], Handler] = {
            ("POST", "/v1/chat/completions"): self._chat,
            ("POST", "/v1/messages"): self._messages,
            ("POST", "/v1/embeddings"): self._embeddings,
            ("GET", "/v1/models"): self._models,
            ("GET", "/mock/stats"): self._get_stats,
            ("POST", "/mock/reset-stats"): self._reset_stats,
            ("GET", "/mock/config"): self._get_config,
            ("POST", "/mock/config"): self._set_config,
        }

    def configure(self, config: MockConfig, *, reseed: bool = False) -> None:
        """Swap the live config; requests in progress finish under the one they started with."""
        self.config = config
        self._models_body = _models_body(config)
        if reseed:
            self._rng = SystemRng(config.seed)

    async def __call__(self, request: web.BaseRequest) -> web.StreamResponse:
        path = request.path
        by_path = self.stats.by_path
        by_path[path] = by_path.get(path, 0) + 1
        handler = self._routes.get((request.method, path))
        if handler is None:
            return _error(
                InvalidRequest(f"Invalid URL ({request.method} {path})", code="unknown_url", status=404)
            )
        return await handler(request)

    # -- chat completions and messages ------------------------------------------------------------

    async def _chat(self, request: web.BaseRequest) -> web.StreamResponse:
        return await self._generate(request, _OPENAI)

    async def _messages(self, request: web.BaseRequest) -> web.StreamResponse:
        return await self._generate(request, _ANTHROPIC)

    async def _generate(self, request: web.BaseRequest, wire: _Wire) -> web.StreamResponse:
        """One completion in ``wire``'s format: validate, draw a fault, admit, then answer."""
        raw = await request.read()
        try:
            if wire is _ANTHROPIC:
                if "anthropic-version" not in request.headers:
                    raise InvalidRequest("anthropic-version: header is required", param="anthropic-version")
                payload = anthropic.parse_messages(raw)
                max_tokens = payload.max_tokens
            else:
                payload = openai.parse_chat(raw)
                max_tokens = payload.body.get("max_completion_tokens")
                if max_tokens is None:
                    max_tokens = payload.body.get("max_tokens")
            overrides = _overrides(request, payload.body)
        except InvalidRequest as err:
            self.stats.invalid_400 += 1
            return _error(err, wire)
        config = self.config
        fault = _fault_for(config, overrides, self._rng.random())
        rejection = self._admit(config, fault, wire)
        if rejection is not None:
            return rejection
        plan = plan_chat(config, max_tokens, overrides)
        self.stats.enter()
        try:
            if payload.stream:
                return await self._stream(request, config, payload, plan, fault, wire)
            return await self._complete(request, config, payload, plan, fault, wire)
        except asyncio.CancelledError:
            self.stats.cancelled += 1
            raise
        finally:
            self.stats.in_flight -= 1

    async def _complete(
        self,
        request: web.BaseRequest,
        config: MockConfig,
        payload: Payload,
        plan: ChatPlan,
        fault: Fault | None,
        wire: _Wire,
    ) -> web.StreamResponse:
        if fault is Fault.ERROR or fault is Fault.RESET:
            await self._clock.sleep(plan.first_token_s)
            return self._server_error(wire) if fault is Fault.ERROR else self._reset(request, None)
        wait_s = plan.total_s
        if fault is Fault.STALL:
            self.stats.stalls += 1
            wait_s += config.stall_s
        await self._clock.sleep(wait_s)
        tokens = plan.completion_tokens
        if wire is _ANTHROPIC:
            body = anthropic.message(
                id=self._next_id("msg_mock"),
                model=payload.model,
                content=content_text(tokens),
                stop_reason=_STOP_REASONS[plan.finish_reason],
                input_tokens=payload.estimated_prompt_tokens,
                output_tokens=tokens,
            )
        else:
            body = openai.completion(
                id=self._next_id("chatcmpl-mock"),
                created=int(self._clock.wall()),
                model=payload.model,
                content=content_text(tokens),
                finish_reason=plan.finish_reason,
                prompt_tokens=payload.estimated_prompt_tokens,
                completion_tokens=tokens,
            )
        self.stats.served += 1
        return web.Response(body=body, headers=self._headers(config, _JSON, wire))

    async def _stream(
        self,
        request: web.BaseRequest,
        config: MockConfig,
        payload: Payload,
        plan: ChatPlan,
        fault: Fault | None,
        wire: _Wire,
    ) -> web.StreamResponse:
        clock = self._clock
        await clock.sleep(plan.first_token_s)
        if fault is Fault.ERROR:
            return self._server_error(wire)
        if fault is Fault.RESET and config.fault_after_chunks == 0:
            return self._reset(request, None)
        tokens = plan.completion_tokens
        piece: Callable[[int], bytes]
        if wire is _ANTHROPIC:
            head, piece, tail = self._anthropic_frames(payload, plan)
        else:
            head, piece, tail = self._openai_frames(payload, plan)
        response = web.StreamResponse(headers=self._headers(config, _SSE, wire))
        fault_at = min(config.fault_after_chunks, tokens) if fault in (Fault.RESET, Fault.STALL) else -1
        pending = head
        try:
            await response.prepare(request)
            start = clock.now()  # token i is due at start + plan.next_due_s(i)
            sent = 0
            while True:
                if sent == fault_at:
                    fault_at = -1
                    await response.write(b"".join(pending))
                    pending = []
                    if fault is Fault.RESET:
                        return self._reset(request, response)
                    self.stats.stalls += 1
                    await clock.sleep(config.stall_s)
                    start += config.stall_s
                if sent >= tokens:
                    break
                due = plan.tokens_due(clock.now() - start)
                if sent < fault_at < due:
                    due = fault_at
                if due > sent:
                    pending.extend(piece(i) for i in range(sent, due))
                    sent = due
                    continue
                if pending:
                    await response.write(b"".join(pending))
                    pending = []
                await clock.sleep(max(plan.next_due_s(sent) - (clock.now() - start), 0.0))
            pending.extend(tail)
            await response.write(b"".join(pending))
            await response.write_eof()
        except ConnectionError:  # the client went away mid-stream
            self.stats.cancelled += 1
            return response
        self.stats.served += 1
        return response

    def _openai_frames(
        self, payload: Payload, plan: ChatPlan
    ) -> tuple[list[bytes], Callable[[int], bytes], list[bytes]]:
        """The role chunk, one chunk per token, then finish (+ usage when asked) and ``[DONE]``."""
        cid = self._next_id("chatcmpl-mock")
        created = int(self._clock.wall())
        with_usage = payload.include_usage
        model = payload.model

        def frame(**fields: Any) -> bytes:
            return _event(openai.chunk(id=cid, created=created, model=model, **fields), with_usage)

        tail = [frame(finish_reason=plan.finish_reason)]
        if with_usage:
            prompt, tokens = payload.estimated_prompt_tokens, plan.completion_tokens
            usage = {"prompt_tokens": prompt, "completion_tokens": tokens, "total_tokens": prompt + tokens}
            tail.append(frame(usage=usage, no_choices=True))
        tail.append(sse.DONE)
        return [frame(role="assistant", content="")], lambda i: frame(content=token_text(i)), tail

    def _anthropic_frames(
        self, payload: Payload, plan: ChatPlan
    ) -> tuple[list[bytes], Callable[[int], bytes], list[bytes]]:
        """Anthropic's sequence: message_start, content_block_start, ping, deltas, then the end."""
        start = anthropic.message_start(
            id=self._next_id("msg_mock"), model=payload.model, input_tokens=payload.estimated_prompt_tokens
        )
        head = [start, anthropic.text_block_start(0), anthropic.PING]
        tail = [
            anthropic.content_block_stop(0),
            anthropic.message_delta(
                stop_reason=_STOP_REASONS[plan.finish_reason], output_tokens=plan.completion_tokens
            ),
            anthropic.MESSAGE_STOP,
        ]
        return head, lambda i: anthropic.text_delta(0, token_text(i)), tail

    # -- embeddings and models --------------------------------------------------------------------

    async def _embeddings(self, request: web.BaseRequest) -> web.StreamResponse:
        raw = await request.read()
        config = self.config
        try:
            payload = openai.parse_embeddings(raw)
            overrides = _overrides(request, payload.body)
            dimensions = _dimensions(payload.body, config.embedding_dimensions)
        except InvalidRequest as err:
            self.stats.invalid_400 += 1
            return _error(err)
        fault = _fault_for(config, overrides, self._rng.random())
        rejection = self._admit(config, fault, _OPENAI)
        if rejection is not None:
            return rejection
        self.stats.enter()
        try:
            wait_s = config.base_latency_s if overrides.latency_s is None else overrides.latency_s
            if fault is Fault.STALL:
                self.stats.stalls += 1
                wait_s += config.stall_s
            await self._clock.sleep(wait_s)
            if fault is Fault.ERROR:
                return self._server_error(_OPENAI)
            if fault is Fault.RESET:
                return self._reset(request, None)
            items = embedding_inputs(payload.body["input"])
            encoding_format = payload.body.get("encoding_format")
            data = [
                {
                    "object": "embedding",
                    "index": i,
                    "embedding": encode_embedding(embedding(item, dimensions), encoding_format),
                }
                for i, item in enumerate(items)
            ]
            prompt = sum(input_tokens(item) for item in items)
            body = _encode(
                {
                    "object": "list",
                    "data": data,
                    "model": payload.model,
                    "usage": {"prompt_tokens": prompt, "total_tokens": prompt},
                }
            )
            self.stats.served += 1
            return web.Response(body=body, headers=self._headers(config, _JSON, _OPENAI))
        except asyncio.CancelledError:
            self.stats.cancelled += 1
            raise
        finally:
            self.stats.in_flight -= 1

    async def _models(self, request: web.BaseRequest) -> web.StreamResponse:
        self.stats.served += 1
        return web.Response(body=self._models_body, headers={"Content-Type": _JSON})

    # -- admin ------------------------------------------------------------------------------------

    async def _get_stats(self, request: web.BaseRequest) -> web.StreamResponse:
        return _json(self.stats.to_dict())

    async def _reset_stats(self, request: web.BaseRequest) -> web.StreamResponse:
        self.stats.reset()
        return _json(self.stats.to_dict())

    async def _get_config(self, request: web.BaseRequest) -> web.StreamResponse:
        return _json(self.config.to_dict())

    async def _set_config(self, request: web.BaseRequest) -> web.StreamResponse:
        raw = await request.read()
        try:
            changes = _decode(raw)
        except msgspec.DecodeError as exc:
            return _error(InvalidRequest(f"Request body is not valid JSON: {exc}", code="invalid_json"))
        if not isinstance(changes, dict):
            return _error(InvalidRequest("Request body must be a JSON object.", code="invalid_json"))
        try:
            config = self.config.with_changes(changes)
        except ValueError as exc:
            return _error(InvalidRequest(str(exc), code="invalid_mock_config"))
        self.configure(config, reseed="seed" in changes)
        return _json(config.to_dict())

    # -- shared answers ---------------------------------------------------------------------------

    def _admit(self, config: MockConfig, fault: Fault | None, wire: _Wire) -> web.StreamResponse | None:
        """A 429 when at capacity (or told to fake it), a 529 when told to, else ``None``: start."""
        capacity = config.max_in_flight
        at_capacity = capacity is not None and self.stats.in_flight >= capacity
        err: GatewayError
        if fault is Fault.OVERLOADED and not at_capacity:
            self.stats.overloaded_529 += 1
            err = Overloaded("Overloaded", status=anthropic.OVERLOADED_STATUS)
        elif fault is Fault.RATE_LIMIT or at_capacity:
            self.stats.rejected_429 += 1
            why = f"{capacity} requests in flight" if at_capacity else "injected fault"
            err = RateLimited(f"Rate limit reached on the mock upstream ({why}).")
        else:
            return None
        wait_s = retry_after_s(config)
        headers = self._headers(config, _JSON, wire)
        headers["retry-after"] = str(max(1, math.ceil(wait_s)))
        headers["retry-after-ms"] = str(max(1, round(wait_s * 1000)))
        return web.Response(status=err.status, body=wire.error_body(err), headers=headers)

    def _server_error(self, wire: _Wire) -> web.StreamResponse:
        self.stats.errors_500 += 1
        message = _SERVER_ERROR_MESSAGE if wire is _OPENAI else "Internal server error"
        return _error(GatewayError(message), wire)

    def _reset(self, request: web.BaseRequest, response: web.StreamResponse | None) -> web.StreamResponse:
        """Abort the connection; the returned response is never written (aiohttp sees a dead link)."""
        self.stats.resets += 1
        transport = request.transport
        if transport is not None:
            transport.abort()
        return response if response is not None else web.Response(status=500)

    def _headers(self, config: MockConfig, content_type: str, wire: _Wire) -> dict[str, str]:
        headers = {"Content-Type": content_type}
        capacity = config.max_in_flight
        if capacity is not None:
            headers[wire.limit_header] = str(capacity)
            headers[wire.remaining_header] = str(max(capacity - self.stats.in_flight, 0))
        return headers

    def _next_id(self, prefix: str) -> str:
        self._seq += 1
        return f"{prefix}-{self._seq:010d}"


def _fault_for(config: MockConfig, overrides: Overrides, sample: float) -> Fault | None:
    # The sample is drawn even when overridden, so one seed gives one sequence of draws.
    return overrides.fault if overrides.fault is not None else choose_fault(config, sample)


def _overrides(request: web.BaseRequest, body: dict[str, Any]) -> Overrides:
    headers = request.headers
    try:
        return parse_overrides(headers.get("x-mock-latency-s"), headers.get("x-mock-fault"), body.get("mock"))
    except ValueError as exc:
        raise InvalidRequest(str(exc), param="mock") from None


def _dimensions(body: dict[str, Any], default: int) -> int:
    value = body.get("dimensions")
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65536:
        raise InvalidRequest("'dimensions' must be an integer in 1..65536.", param="dimensions")
    return value


def _event(data: bytes, with_usage: bool) -> bytes:
    if not with_usage and data.endswith(_NULL_USAGE_SUFFIX):
        data = data[: -len(_NULL_USAGE_SUFFIX)] + b"}"
    return sse.event(data)


def _models_body(config: MockConfig) -> bytes:
    data = [{"id": m, "object": "model", "created": 0, "owned_by": "seawall-mock"} for m in config.models]
    return _encode({"object": "list", "data": data})


def _error(err: GatewayError, wire: _Wire = _OPENAI) -> web.Response:
    headers = {"Content-Type": _JSON}
    return web.Response(status=wire.status_for(err), body=wire.error_body(err), headers=headers)


def _json(value: Any) -> web.Response:
    return web.Response(body=_encode(value), headers={"Content-Type": _JSON})
