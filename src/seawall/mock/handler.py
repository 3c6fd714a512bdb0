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
import dataclasses
import datetime
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import msgspec
from aiohttp import web

from seawall.algorithms.quota import format_reset
from seawall.core.errors import GatewayError, InvalidRequest, Overloaded, RateLimited
from seawall.core.types import Payload
from seawall.env import Clock, Rng, SystemClock, SystemRng
from seawall.mock import bodies
from seawall.mock.answer import Answer, answer_for
from seawall.mock.config import MockConfig
from seawall.mock.model import (
    ChatPlan,
    Fault,
    Overrides,
    choose_fault,
    embedding,
    embedding_inputs,
    encode_embedding,
    input_tokens,
    parse_overrides,
    plan_chat,
    retry_after_s,
    server_for,
)
from seawall.mock.servers import TTFT_BUCKETS_S, Accepted, BatchingServer, RateLimitState, Refused
from seawall.mock.stats import MockStats
from seawall.providers import anthropic, completions, moderations, openai, sse

__all__ = ["MockUpstream"]

_JSON = "application/json"
_SSE = "text/event-stream; charset=utf-8"
# ``providers.openai.chunk`` always renders ``"usage": null``; OpenAI only sends that key when the
# client asked for ``stream_options.include_usage``, so plain streams drop it.
_NULL_USAGE_SUFFIX = b',"usage":null}'
_SERVER_ERROR_MESSAGE = "The server had an error while processing your request. Sorry about that!"
_encode = msgspec.json.encode
_decode = msgspec.json.decode

Handler = Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]


@dataclass(frozen=True, slots=True)
class _Wire:
    """What differs between the OpenAI and the Anthropic endpoints: error bodies and header names."""

    error_body: Callable[[GatewayError], bytes]
    status_for: Callable[[GatewayError], int]
    rate_headers: Callable[[RateLimitState, float], dict[str, str]]
    overloaded_status: int


def openai_rate_headers(state: RateLimitState, wall_s: float) -> dict[str, str]:
    """The ``x-ratelimit-*`` headers the mock sends for ``state`` (the simulator reads the same)."""
    headers = {
        "x-ratelimit-limit-requests": str(state.limit_requests),
        "x-ratelimit-remaining-requests": str(state.remaining_requests),
        "x-ratelimit-reset-requests": format_reset(state.reset_requests_s),
    }
    if state.limit_tokens is not None:
        headers["x-ratelimit-limit-tokens"] = str(state.limit_tokens)
        headers["x-ratelimit-remaining-tokens"] = str(state.remaining_tokens)
        headers["x-ratelimit-reset-tokens"] = format_reset(state.reset_tokens_s or 0.0)
    return headers


def _anthropic_rate_headers(state: RateLimitState, wall_s: float) -> dict[str, str]:
    """Anthropic's names; its resets are RFC 3339 instants, not durations."""
    headers = {
        "anthropic-ratelimit-requests-limit": str(state.limit_requests),
        "anthropic-ratelimit-requests-remaining": str(state.remaining_requests),
        "anthropic-ratelimit-requests-reset": _rfc3339(wall_s + state.reset_requests_s),
    }
    if state.limit_tokens is not None:
        headers["anthropic-ratelimit-tokens-limit"] = str(state.limit_tokens)
        headers["anthropic-ratelimit-tokens-remaining"] = str(state.remaining_tokens)
        headers["anthropic-ratelimit-tokens-reset"] = _rfc3339(wall_s + (state.reset_tokens_s or 0.0))
    return headers


def _rfc3339(wall_s: float) -> str:
    return datetime.datetime.fromtimestamp(math.ceil(wall_s), datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


_OPENAI = _Wire(openai.error_body, lambda err: err.status, openai_rate_headers, 503)
_LEGACY = _Wire(openai.error_body, lambda err: err.status, openai_rate_headers, 503)  # /v1/completions
_ANTHROPIC = _Wire(anthropic.error_body, anthropic.status_for, _anthropic_rate_headers, anthropic.OVERLOADED_STATUS)


class MockUpstream:
    """The request handler: shared config, counters, clock and RNG; no per-request state.

    ``clock`` paces latency and tokens (default :class:`SystemClock`); ``rng`` draws one sample per
    chat/messages/embeddings request for fault injection (default ``SystemRng(config.seed)``).
    """

    __slots__ = ("_clock", "_models_body", "_rng", "_routes", "_seq", "config", "server", "stats")

    def __init__(self, config: MockConfig, *, clock: Clock | None = None, rng: Rng | None = None) -> None:
        self.config = config
        self.stats = MockStats()
        self._clock: Clock = clock if clock is not None else SystemClock()
        self._rng: Rng = rng if rng is not None else SystemRng(config.seed)
        self._seq = 0
        self._models_body = _models_body(config)
        self.server = server_for(config)
        self._routes: dict[tuple[str, str], Handler] = {
            ("POST", "/v1/chat/completions"): self._chat,
            ("POST", "/v1/messages"): self._messages,
            ("POST", "/v1/completions"): self._completions,
            ("POST", "/v1/embeddings"): self._embeddings,
            ("POST", "/v1/moderations"): self._moderations,
            ("GET", "/v1/models"): self._models,
            ("GET", "/mock/stats"): self._get_stats,
            ("POST", "/mock/reset-stats"): self._reset_stats,
            ("GET", "/mock/config"): self._get_config,
            ("POST", "/mock/config"): self._set_config,
            ("GET", "/metrics"): self._metrics,
        }

    def configure(self, config: MockConfig, *, reseed: bool = False) -> None:
        """Swap the live config; requests in progress finish under the one they started with."""
        self.config = config
        self._models_body = _models_body(config)
        self.server = server_for(config, self.server)
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

    async def _completions(self, request: web.BaseRequest) -> web.StreamResponse:
        return await self._generate(request, _LEGACY)

    async def _generate(self, request: web.BaseRequest, wire: _Wire) -> web.StreamResponse:
        """One completion in ``wire``'s format: validate, draw a fault, admit, then answer."""
        raw = await request.read()
        try:
            if wire is _ANTHROPIC:
                if "anthropic-version" not in request.headers:
                    raise InvalidRequest("anthropic-version: header is required", param="anthropic-version")
                payload = anthropic.parse_messages(raw)
                max_tokens = payload.max_tokens
            elif wire is _LEGACY:
                payload = completions.parse_completions(raw)
                max_tokens = payload.body.get("max_tokens", completions.DEFAULT_MAX_TOKENS)
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
        server = self.server
        fault = _fault_for(config, overrides, self._rng.random())
        now = self._clock.now()
        key = _api_key(request)
        rejection = self._injected(fault, wire, key)
        if rejection is not None:
            return rejection
        answer = answer_for(payload.body, anthropic=wire is _ANTHROPIC,
                            text_tokens=plan_chat(config, None, overrides).completion_tokens,
                            max_tokens=max_tokens, call_id=self._next_id("call_mock"))
        plan = dataclasses.replace(plan_chat(config, None, overrides), completion_tokens=len(answer.pieces),
                                   finish_reason=answer.finish_reason)
        prompt = payload.estimated_prompt_tokens
        sample = self._rng.random() if server.behaviour == "hosted" else 1.0
        admitted = server.submit(
            now,
            prompt,
            plan.completion_tokens,
            reserve_tokens=prompt + (max_tokens if max_tokens is not None else plan.completion_tokens),
            key=key,
            sample=sample,
        )
        if isinstance(admitted, Refused):
            return self._refused(admitted, wire, key)
        timeline = _timeline(server, admitted, plan, overrides, now)
        self.stats.enter()
        try:
            if payload.stream:
                return await self._stream(request, config, payload, answer, plan, timeline, fault, wire, key)
            return await self._complete(request, config, payload, answer, plan, timeline, fault, wire, key)
        except asyncio.CancelledError:
            self.stats.cancelled += 1
            raise
        finally:
            self.stats.in_flight -= 1
            server.finish(self._clock.now(), admitted.rid)

    async def _complete(
        self,
        request: web.BaseRequest,
        config: MockConfig,
        payload: Payload,
        answer: Answer,
        plan: ChatPlan,
        timeline: _Timeline,
        fault: Fault | None,
        wire: _Wire,
        key: str,
    ) -> web.StreamResponse:
        clock = self._clock
        if fault is Fault.ERROR or fault is Fault.RESET:
            while not timeline.started(clock.now()):
                await clock.sleep(_nap(timeline.due_s(1) - clock.now()))
            return self._server_error(wire) if fault is Fault.ERROR else self._reset(request, None)
        while not timeline.finished(clock.now()):
            await clock.sleep(_nap(timeline.due_s(plan.completion_tokens) - clock.now()))
        if fault is Fault.STALL:
            self.stats.stalls += 1
            await clock.sleep(config.stall_s)
        prompt = payload.estimated_prompt_tokens
        if wire is _ANTHROPIC:
            body = bodies.anthropic_message(answer, id=self._next_id("msg_mock"), model=payload.model,
                                            input_tokens=prompt)
        elif wire is _LEGACY:
            body = completions.completion(
                id=self._next_id("cmpl-mock"), created=int(self._clock.wall()), model=payload.model,
                text=answer.text, finish_reason=answer.finish_reason,
                prompt_tokens=prompt, completion_tokens=len(answer.pieces),
            )
        else:
            body = bodies.chat_body(answer, payload.body, id=self._next_id("chatcmpl-mock"),
                                    created=int(self._clock.wall()), model=payload.model, prompt_tokens=prompt)
        self.stats.served += 1
        return web.Response(body=body, headers=self._headers(_JSON, wire, key))

    async def _stream(
        self,
        request: web.BaseRequest,
        config: MockConfig,
        payload: Payload,
        answer: Answer,
        plan: ChatPlan,
        timeline: _Timeline,
        fault: Fault | None,
        wire: _Wire,
        key: str,
    ) -> web.StreamResponse:
        clock = self._clock
        while not timeline.started(clock.now()):
            await clock.sleep(_nap(timeline.due_s(1) - clock.now()))
        if fault is Fault.ERROR:
            return self._server_error(wire)
        if fault is Fault.RESET and config.fault_after_chunks == 0:
            return self._reset(request, None)
        tokens = plan.completion_tokens
        piece: Callable[[int], bytes]
        if wire is _ANTHROPIC:
            head, piece, tail = bodies.anthropic_frames(answer, id=self._next_id("msg_mock"), model=payload.model,
                                                        input_tokens=payload.estimated_prompt_tokens)
        elif wire is _LEGACY:
            head, piece, tail = self._legacy_frames(payload, answer)
        else:
            head, piece, tail = bodies.chat_frames(
                answer, payload.body, id=self._next_id("chatcmpl-mock"), created=int(self._clock.wall()),
                model=payload.model, prompt_tokens=payload.estimated_prompt_tokens,
                include_usage=payload.include_usage)
        response = web.StreamResponse(headers=self._headers(_SSE, wire, key))
        fault_at = min(config.fault_after_chunks, tokens) if fault in (Fault.RESET, Fault.STALL) else -1
        pending = head
        try:
            await response.prepare(request)
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
                    timeline.delay(config.stall_s)
                if sent >= tokens:
                    break
                due = timeline.out(clock.now())
                if sent < fault_at < due:
                    due = fault_at
                if due > sent:
                    pending.extend(piece(i) for i in range(sent, due))
                    sent = due
                    continue
                if pending:
                    await response.write(b"".join(pending))
                    pending = []
                await clock.sleep(_nap(timeline.due_s(sent + 1) - clock.now()))
            pending.extend(tail)
            await response.write(b"".join(pending))
            await response.write_eof()
        except ConnectionError:  # the client went away mid-stream
            self.stats.cancelled += 1
            return response
        self.stats.served += 1
        return response

    def _legacy_frames(
        self, payload: Payload, answer: Answer
    ) -> tuple[list[bytes], Callable[[int], bytes], list[bytes]]:
        """Legacy completions: one ``text_completion`` chunk per token, the finish, usage when asked."""
        cid = self._next_id("cmpl-mock")
        created = int(self._clock.wall())
        with_usage = payload.include_usage
        model = payload.model

        def frame(**fields: Any) -> bytes:
            return _event(completions.chunk(id=cid, created=created, model=model, **fields), with_usage)

        tail = [frame(finish_reason=answer.finish_reason)]
        if with_usage:
            prompt, tokens = payload.estimated_prompt_tokens, len(answer.pieces)
            usage = {"prompt_tokens": prompt, "completion_tokens": tokens, "total_tokens": prompt + tokens}
            tail.append(frame(usage=usage, no_choices=True))
        tail.append(sse.DONE)
        return [], lambda i: frame(text=answer.pieces[i]), tail

    # -- embeddings and models --------------------------------------------------------------------

    async def _moderations(self, request: web.BaseRequest) -> web.StreamResponse:
        """A keyword classifier in OpenAI's category schema (providers/moderations.py), after the
        base latency; faults as for embeddings. No capacity model: classifiers are cheap."""
        raw = await request.read()
        try:
            payload = moderations.parse_moderations(raw, default_model="omni-moderation-latest")
            overrides = _overrides(request, payload.body)
        except InvalidRequest as err:
            self.stats.invalid_400 += 1
            return _error(err)
        config = self.config
        fault = _fault_for(config, overrides, self._rng.random())
        key = _api_key(request)
        rejection = self._injected(fault, _OPENAI, key)
        if rejection is not None:
            return rejection
        self.stats.enter()
        try:
            await self._clock.sleep(config.base_latency_s if overrides.latency_s is None else overrides.latency_s)
            if fault is Fault.ERROR:
                return self._server_error(_OPENAI)
            if fault is Fault.RESET:
                return self._reset(request, None)
            body = moderations.response(payload.body, id=self._next_id("modr-mock"))
            self.stats.served += 1
            return web.Response(body=body, headers=self._headers(_JSON, _OPENAI, key))
        finally:
            self.stats.in_flight -= 1

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
        key = _api_key(request)
        rejection = self._injected(fault, _OPENAI, key)
        if rejection is not None:
            return rejection
        server = self.server
        rid = None
        if not isinstance(server, BatchingServer):  # a batching server serves generation only
            prompt = sum(input_tokens(item) for item in embedding_inputs(payload.body["input"]))
            admitted = server.submit(self._clock.now(), prompt, 0, key=key)
            if isinstance(admitted, Refused):
                return self._refused(admitted, _OPENAI, key)
            rid = admitted.rid
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
            return web.Response(body=body, headers=self._headers(_JSON, _OPENAI, key))
        except asyncio.CancelledError:
            self.stats.cancelled += 1
            raise
        finally:
            self.stats.in_flight -= 1
            if rid is not None:
                server.finish(self._clock.now(), rid)

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

    def _injected(self, fault: Fault | None, wire: _Wire, key: str) -> web.StreamResponse | None:
        """The answer to an injected 429 or 529 fault (``x-mock-fault``), else ``None``."""
        err: GatewayError
        if fault is Fault.OVERLOADED:
            self.stats.overloaded_529 += 1
            err = Overloaded("Overloaded", status=anthropic.OVERLOADED_STATUS)
        elif fault is Fault.RATE_LIMIT:
            self.stats.rejected_429 += 1
            err = RateLimited("Rate limit reached on the mock upstream (injected fault).")
        else:
            return None
        return self._refusal(err, wire, key, retry_after_s(self.config))

    def _refused(self, refused: Refused, wire: _Wire, key: str) -> web.StreamResponse:
        """The behaviour model said no: a 429 (capacity, rate limit), 503/529 (overloaded) or 400."""
        err: GatewayError
        if refused.overloaded:
            self.stats.overloaded_529 += 1
            err = Overloaded("Overloaded" if wire is _ANTHROPIC else "The server is overloaded.",
                             status=wire.overloaded_status)
        elif refused.status == 429:
            self.stats.rejected_429 += 1
            err = RateLimited(f"Rate limit reached on the mock upstream ({refused.message}).")
        else:
            self.stats.invalid_400 += 1
            err = InvalidRequest(refused.message, code="context_length_exceeded")
        return self._refusal(err, wire, key, refused.retry_after_s)

    def _refusal(self, err: GatewayError, wire: _Wire, key: str, wait_s: float | None) -> web.StreamResponse:
        headers = self._headers(_JSON, wire, key)
        if wait_s is not None:
            headers["retry-after"] = str(max(1, math.ceil(wait_s)))
            headers["retry-after-ms"] = str(max(1, round(wait_s * 1000)))
        return web.Response(status=wire.status_for(err), body=wire.error_body(err), headers=headers)

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

    def _headers(self, content_type: str, wire: _Wire, key: str) -> dict[str, str]:
        headers = {"Content-Type": content_type}
        state = self.server.rate_limits(self._clock.now(), key)
        if state is not None:
            headers.update(wire.rate_headers(state, self._clock.wall()))
        return headers

    async def _metrics(self, request: web.BaseRequest) -> web.StreamResponse:
        """Prometheus text in vLLM's names (``vllm:num_requests_running``, ...), any behaviour."""
        server = self.server
        now = self._clock.now()
        server.advance(now)
        gauges = server.gauges()
        model = self.config.models[0]
        label = f'{{model_name="{model}"}}'
        lines = [
            "# HELP vllm:num_requests_running Number of requests in model execution batches.",
            "# TYPE vllm:num_requests_running gauge",
            f"vllm:num_requests_running{label} {gauges['running']:g}",
            "# HELP vllm:num_requests_waiting Number of requests waiting to be processed.",
            "# TYPE vllm:num_requests_waiting gauge",
            f"vllm:num_requests_waiting{label} {gauges['waiting']:g}",
            "# HELP vllm:gpu_cache_usage_perc GPU KV-cache usage. 1 means 100 percent usage.",
            "# TYPE vllm:gpu_cache_usage_perc gauge",
            f"vllm:gpu_cache_usage_perc{label} {gauges.get('kv_cache_usage', 0.0):g}",
            "# HELP vllm:time_to_first_token_seconds Histogram of time to first token in seconds.",
            "# TYPE vllm:time_to_first_token_seconds histogram",
        ]
        if isinstance(server, BatchingServer):
            counts, total, count = server.ttft_buckets, server.ttft_sum, server.ttft_count
        else:
            counts, total, count = [0] * len(TTFT_BUCKETS_S), 0.0, 0
        for bound, n in zip(TTFT_BUCKETS_S, counts, strict=True):
            lines.append(f'vllm:time_to_first_token_seconds_bucket{{le="{bound}",model_name="{model}"}} {n}')
        lines.append(f'vllm:time_to_first_token_seconds_bucket{{le="+Inf",model_name="{model}"}} {count}')
        lines.append(f"vllm:time_to_first_token_seconds_sum{label} {total:g}")
        lines.append(f"vllm:time_to_first_token_seconds_count{label} {count}")
        body = ("\n".join(lines) + "\n").encode()
        return web.Response(body=body, headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"})

    def _next_id(self, prefix: str) -> str:
        self._seq += 1
        return f"{prefix}-{self._seq:010d}"


class _Timeline:
    """When the tokens of one admitted completion are out: fixed at admission (slots, hosted) or
    decided by a batching server as it runs."""

    __slots__ = ("first_due_s", "n", "plan", "rid", "server")

    def __init__(self, plan: ChatPlan, start_s: float, server: BatchingServer | None, rid: int) -> None:
        self.plan = plan
        self.n = plan.completion_tokens
        self.first_due_s = start_s + plan.first_token_s
        self.server = server
        self.rid = rid

    def started(self, now_s: float) -> bool:
        server = self.server
        if server is None:
            return now_s >= self.first_due_s - 1e-9
        server.advance(now_s)
        return server.started(self.rid)

    def finished(self, now_s: float) -> bool:
        server = self.server
        if server is None:
            return now_s >= self.first_due_s + self.plan.total_s - self.plan.first_token_s - 1e-9
        server.advance(now_s)
        return server.done(self.rid)

    def out(self, now_s: float) -> int:
        """Tokens out by ``now_s``."""
        server = self.server
        if server is None:
            return self.plan.tokens_due(now_s - self.first_due_s)
        server.advance(now_s)
        return server.tokens_out(self.rid)

    def due_s(self, tokens: int) -> float:
        """When ``tokens`` tokens should be out (for a batching server, an estimate as of now)."""
        if self.server is None:
            return self.first_due_s + self.plan.next_due_s(max(tokens, 1) - 1)
        return self.server.due_s(self.rid, tokens)

    def delay(self, seconds: float) -> None:
        """A stall: fixed timings shift; a batching server went on generating (sent in one go)."""
        if self.server is None:
            self.first_due_s += seconds


def _timeline(server: Any, admitted: Accepted, plan: ChatPlan, overrides: Overrides, now_s: float) -> _Timeline:
    if isinstance(server, BatchingServer):
        return _Timeline(plan, now_s, server, admitted.rid)
    first_s = admitted.first_s if overrides.latency_s is None else plan.first_token_s
    fixed = ChatPlan(first_s or 0.0, admitted.interval_s, plan.completion_tokens, plan.finish_reason)
    return _Timeline(fixed, now_s, None, admitted.rid)


def _nap(seconds: float) -> float:
    """How long to sleep toward a due time: at least a millisecond, so an estimate never spins."""
    return seconds if seconds > 0.001 else 0.001


def _api_key(request: web.BaseRequest) -> str:
    """The caller's key, which a hosted provider's rate limits are kept per."""
    headers = request.headers
    return headers.get("authorization") or headers.get("x-api-key") or ""


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
