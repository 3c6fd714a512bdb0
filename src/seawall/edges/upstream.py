"""The upstream edge: pooled HTTP to OpenAI-compatible servers (OpenAI, vLLM, Ollama, TGI, ...).

One ``aiohttp`` session per deployment (its own connection pool and limit). Each attempt is bounded
by the connect/read/total timeouts and by the request's absolute deadline, whichever ends first.
A stream is returned only after its first event arrived, so a failure before the first byte can
still be handled (retried elsewhere) by the policies; a failure after it is raised from inside the
stream and the server edge turns it into an error event. Cancelling the request (the client went
away) closes the upstream connection at once, so the provider stops generating.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import msgspec

from seawall.core.errors import GatewayError, InvalidRequest, Overloaded, UpstreamError, UpstreamTimeout
from seawall.core.types import Operation, Request, Response, Usage
from seawall.env import Clock
from seawall.providers.sse import DONE, EventSplitter

__all__ = ["OpenAIUpstream", "UpstreamSettings", "retry_after_from"]

_JSON = [("content-type", "application/json")]
_SSE = [("content-type", "text/event-stream"), ("cache-control", "no-cache")]
_PATHS = {Operation.CHAT: "/chat/completions", Operation.EMBEDDINGS: "/embeddings"}


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


@dataclass(frozen=True, slots=True)
class UpstreamSettings:
    name: str
    base_url: str
    model: str | None = None  # upstream model name; None: the public one
    api_key: str | None = None
    connect_s: float = 5.0
    read_s: float = 60.0
    total_s: float = 600.0
    max_connections: int = 256


def retry_after_from(headers: Any) -> float | None:
    """Seconds from ``retry-after-ms`` or ``retry-after`` (delta seconds), if present and sane."""
    value = headers.get("retry-after-ms")
    try:
        if value is not None:
            return max(0.0, float(value) / 1000.0)
        value = headers.get("retry-after")
        if value is not None:
            return max(0.0, float(value))
    except ValueError:
        return None
    return None


def _usage(view: _UsageView | None) -> Usage | None:
    return None if view is None else Usage(view.prompt_tokens, view.completion_tokens)


class OpenAIUpstream:
    def __init__(self, settings: UpstreamSettings, *, clock: Clock) -> None:
        self.settings = settings
        self.name = settings.name
        self.clock = clock
        self._session: aiohttp.ClientSession | None = None
        self._auth = {"authorization": f"Bearer {settings.api_key}"} if settings.api_key else {}

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(
                limit=self.settings.max_connections, keepalive_timeout=30, ttl_dns_cache=300
            )
            self._session = aiohttp.ClientSession(
                connector=connector, skip_auto_headers=("User-Agent",), auto_decompress=True
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

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

    async def send(self, request: Request) -> Response:
        remaining_s = request.deadline - self.clock.now()
        if remaining_s <= 0:
            raise UpstreamTimeout("The request deadline passed before the upstream call.", reason="deadline")
        s = self.settings
        timeout = aiohttp.ClientTimeout(total=min(s.total_s, remaining_s), sock_connect=s.connect_s,
                                        sock_read=s.read_s)
        headers = {"content-type": "application/json", "x-request-id": request.id, **self._auth}
        url = s.base_url + _PATHS[request.operation]
        stream = request.payload.stream
        try:
            resp = await self._get_session().post(url, data=self._body(request), headers=headers,
                                                  timeout=timeout)
        except (TimeoutError, aiohttp.ServerTimeoutError):
            raise UpstreamTimeout(f"Upstream '{self.name}' did not answer in time.",
                                  reason="upstream_timeout") from None
        except aiohttp.ClientError as exc:
            raise UpstreamError(f"Upstream '{self.name}' unreachable: {type(exc).__name__}.",
                                reason="upstream_connect") from None
        try:
            if resp.status != 200:
                body = await resp.read()
                raise self._status_error(resp.status, resp.headers, body)
            if not stream:
                body = await resp.read()
                try:
                    usage = _usage(_body_view.decode(body).usage)
                except msgspec.DecodeError:
                    raise UpstreamError(f"Upstream '{self.name}' sent a malformed response.",
                                        reason="upstream_malformed") from None
                resp.release()
                return Response(200, body, headers=list(_JSON), usage=usage, deployment=self.name)
            response = Response(200, headers=list(_SSE), deployment=self.name)
            events = self._events(resp, response, request.payload.include_usage)
            first = await events.__anext__()  # wait for the first event: failures so far are retriable
            response.stream = _prepend(first, events)
            return response
        except (TimeoutError, aiohttp.ServerTimeoutError):
            resp.close()
            raise UpstreamTimeout(f"Upstream '{self.name}' timed out.", reason="upstream_timeout") from None
        except aiohttp.ClientError as exc:
            resp.close()
            raise UpstreamError(f"Upstream '{self.name}' failed: {type(exc).__name__}.",
                                reason="upstream_io") from None
        except StopAsyncIteration:
            resp.close()
            raise UpstreamError(f"Upstream '{self.name}' sent an empty stream.",
                                reason="upstream_truncated") from None
        except BaseException:
            resp.close()
            raise

    def _status_error(self, status: int, headers: Any, body: bytes) -> GatewayError:
        if status == 429:
            return Overloaded(
                f"Upstream '{self.name}' is rate limiting; try again shortly.",
                code="upstream_rate_limited", reason="upstream_429",
                retry_after_s=retry_after_from(headers),
            )
        if status in (400, 404, 409, 413, 422):
            return _ClientFault(status, body)
        if status in (401, 403):
            return UpstreamError(f"Upstream '{self.name}' refused the gateway's credentials ({status}).",
                                 reason="upstream_auth")
        return UpstreamError(f"Upstream '{self.name}' answered {status}.", reason=f"upstream_{status}")

    async def _events(self, resp: aiohttp.ClientResponse, response: Response,
                      client_wants_usage: bool) -> AsyncIterator[bytes]:
        splitter = EventSplitter()
        done = False
        try:
            async for data in resp.content.iter_any():
                for ev in splitter.feed(data):
                    if ev == DONE:
                        done = True
                        yield ev
                        continue
                    if b'"usage":{' in ev or b'"usage": {' in ev:
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
                        raise UpstreamError(
                            f"Upstream '{self.name}' failed mid-stream: {_error_message(ev)}",
                            reason="upstream_stream_error",
                        )
                    yield ev
                if done:
                    break
            if not done:
                raise UpstreamError(f"Upstream '{self.name}' ended the stream early.",
                                    reason="upstream_truncated")
        except (TimeoutError, aiohttp.ServerTimeoutError):
            raise UpstreamTimeout(f"Upstream '{self.name}' stalled mid-stream.",
                                  reason="upstream_stall") from None
        except aiohttp.ClientError as exc:
            raise UpstreamError(f"Upstream '{self.name}' broke the stream: {type(exc).__name__}.",
                                reason="upstream_io") from None
        finally:
            if done:
                resp.release()
            else:
                resp.close()


class _ClientFault(InvalidRequest):
    """The upstream judged the client's request invalid: pass its status and body through."""

    def __init__(self, status: int, body: bytes) -> None:
        message = "The upstream rejected the request."
        try:
            err = msgspec.json.decode(body).get("error", {})
            message = str(err.get("message") or message)
        except (msgspec.DecodeError, AttributeError):
            pass
        super().__init__(message, status=status, code="upstream_rejected", reason="client_error")


def _error_message(event: bytes) -> str:
    try:
        err = msgspec.json.decode(event[event.find(b"{"):]).get("error", {})
        return str(err.get("message") or "unknown error")[:300]
    except (msgspec.DecodeError, AttributeError):
        return "unknown error"


async def _prepend(first: bytes, rest: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    try:
        yield first
        async for item in rest:
            yield item
    finally:
        aclose = getattr(rest, "aclose", None)
        if aclose is not None:
            await aclose()
