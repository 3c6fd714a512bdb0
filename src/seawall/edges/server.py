"""The server edge: a raw ASGI application (no framework on the hot path).

It owns everything HTTP: routing by path, the body size limit (checked against
``content-length`` before reading, and again while reading), request ids, the absolute deadline,
content types, rendering errors in the client's API format, SSE framing, and cancellation: when the
client goes away, the request is cancelled, which closes the upstream connection. Under seawall's
own protocol (:class:`HttpProtocol`, uvicorn's httptools protocol plus a disconnect hook) the
connection's loss cancels the request directly; under any other ASGI server a task per request
waits in ``receive()`` for ``http.disconnect``.
Any exception that is not a :class:`GatewayError` is logged here and answered with a plain 500 in
the API's format; a stack trace never reaches a client.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import itertools
import logging
import math
import os
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any

import msgspec

from seawall import __version__
from seawall.core.errors import (
    GatewayError,
    InvalidRequest,
    ModelNotFound,
    PayloadTooLarge,
    PermissionDenied,
    advertised_retry_after_s,
    retry_after_ms,
)
from seawall.core.types import Operation, Payload, Request, Response
from seawall.edges import openapi
from seawall.edges.cors import Cors
from seawall.edges.count_tokens import CountTokensEndpoint
from seawall.edges.http_limits import ConnectionLimits, LimitedHttpProtocol
from seawall.edges.metrics import CONTENT_TYPE_LATEST
from seawall.edges.responses import ResponsesEndpoint
from seawall.edges.status.routes import ADMIN_INCIDENT_UPDATES, ADMIN_INCIDENTS, StatusRoutes
from seawall.providers import anthropic, completions, moderations, openai

if TYPE_CHECKING:
    from seawall.config.schema import ServerSettings
    from seawall.config.stack import Runtime

__all__ = ["CoalescingWriter", "DisconnectHook", "GatewayApp", "HttpProtocol", "error_headers"]

log = logging.getLogger("seawall.server")

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

_JSON_CT = (b"content-type", b"application/json")
_ID_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.:")


class _ClientGone(Exception):
    pass


class _Dialect:
    """How one client API renders errors: body, status, and the event that ends a failed stream."""

    __slots__ = ("api", "body", "event", "status")

    def __init__(self, api: str, body: Callable[[GatewayError, str], bytes],
                 status: Callable[[GatewayError], int], event: Callable[[GatewayError], bytes]) -> None:
        self.api = api
        self.body = body
        self.status = status
        self.event = event


OPENAI = _Dialect("openai", lambda err, _rid: openai.error_body(err), lambda err: err.status,
                  openai.error_event)
ANTHROPIC = _Dialect("anthropic", lambda err, rid: anthropic.error_body(err, request_id=rid),
                     anthropic.status_for, anthropic.error_event)


Serve = Callable[[Request], Awaitable[Response]]


class _Route:
    """``method`` may list several (``"GET,DELETE"``); ``serve`` replaces the policy stack's handler
    for an API route that translates before it (``/v1/responses``)."""

    __slots__ = ("dialect", "method", "methods", "operation", "parse", "serve")

    def __init__(self, method: str, operation: Operation | None,
                 parse: Callable[[bytes], Payload] | None, dialect: _Dialect = OPENAI,
                 serve: Serve | None = None) -> None:
        self.method = method
        self.methods = frozenset(method.split(","))
        self.operation = operation
        self.parse = parse
        self.dialect = dialect
        self.serve = serve


def error_headers(err: GatewayError) -> list[tuple[bytes, bytes]]:
    """``retry-after``/``retry-after-ms``, ``x-should-retry`` and the reason, for any API format."""
    headers = [(b"x-seawall-reason", err.reason.encode("latin-1", "replace"))]
    wait_s = advertised_retry_after_s(err.status, err.retry_after_s)
    if wait_s is not None:
        headers.append((b"retry-after", str(max(1, math.ceil(wait_s))).encode()))
        headers.append((b"retry-after-ms", str(retry_after_ms(wait_s)).encode()))
    if err.should_retry is not None:
        headers.append((b"x-should-retry", b"true" if err.should_retry else b"false"))
    if err.headers:
        headers += [(k.encode("latin-1"), v.encode("latin-1", "replace")) for k, v in err.headers]
    return headers


#: Young-generation collections every this many allocations (CPython's default: 700). A request
#: allocates a few hundred objects, nearly all freed by reference counting; collecting every few
#: requests cost ~15% of the request path's CPU (docs/decisions.md, "The server edge").
GC_THRESHOLDS = (10_000, 10, 10)


def tune_gc() -> None:
    """After start-up: move everything alive now (config, modules, snapshots) out of the collector's
    sight with ``gc.freeze()``, and collect the young generation less often."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


class GatewayApp:
    def __init__(self, runtime: Runtime, *, tune_gc: bool = False) -> None:
        self.runtime = runtime
        self.tune_gc = tune_gc  # True when the app owns its process (``seawall run``)
        self.max_body_bytes = runtime.config.server.max_body_bytes
        self.default_timeout_s = runtime.config.server.default_timeout_s
        self.max_timeout_s = runtime.config.server.max_timeout_s
        self.clock = runtime.clock
        self.cors = Cors.from_settings(runtime.config.server.cors)  # None: off (the default)
        self._prefix = os.urandom(4).hex()
        self._seq = itertools.count(1)
        self.responses = ResponsesEndpoint(runtime, runtime.responses_store)
        self.routes: dict[str, _Route] = {
            "/v1/chat/completions": _Route("POST", Operation.CHAT, openai.parse_chat),
            "/v1/embeddings": _Route("POST", Operation.EMBEDDINGS, openai.parse_embeddings),
            "/v1/completions": _Route("POST", Operation.COMPLETIONS, completions.parse_completions),
            "/v1/moderations": _Route("POST", Operation.MODERATIONS, functools.partial(
                moderations.parse_moderations, default_model=next(
                    (m.name for m in runtime.config.models if m.kind == "moderation"), None))),
            "/v1/messages": _Route("POST", Operation.MESSAGES, anthropic.parse_messages, ANTHROPIC),
            "/v1/messages/count_tokens": _Route("POST", Operation.COUNT_TOKENS, None, ANTHROPIC,
                                                serve=CountTokensEndpoint(runtime)),
            "/v1/responses": _Route("POST", Operation.RESPONSES, None, serve=self.responses.create),
            "/v1/models": _Route("GET", None, None),
            "/healthz": _Route("GET", None, None),
            "/readyz": _Route("GET", None, None),
            "/metrics": _Route("GET", None, None),
            "/admin/admission": _Route("GET", None, None),
            "/openapi.json": _Route("GET", None, None),
        }
        self._openapi = msgspec.json.encode(openapi.document(__version__))
        # Paths that end in an id: prefix -> (route, the name _plain knows it by, may the id hold "/").
        # Model ids often do ("meta-llama/Llama-3.1-8B"); response ids never.
        self.item_routes: dict[str, tuple[_Route, str, bool]] = {
            "/v1/responses/": (_Route("GET,DELETE", None, None), "/v1/responses/{id}", False),
            "/v1/models/": (_Route("GET", None, None), "/v1/models/{id}", True),
        }
        # The status page and incident management (seawall.edges.status): outside the policy stack.
        self.status: StatusRoutes | None = None
        if runtime.slo is not None:
            self.status = runtime.slo.routes(lambda h, addr: runtime.auth.authenticate(h, addr).admin)
            for path in self.status.paths - {ADMIN_INCIDENT_UPDATES}:
                self.routes[path] = _Route("GET,POST" if path == ADMIN_INCIDENTS else "GET", None, None)
            self.item_routes[ADMIN_INCIDENTS + "/"] = (_Route("POST", None, None), ADMIN_INCIDENT_UPDATES, True)
        self.connection_limits = ConnectionLimits.of(runtime.config.server)  # read by HttpProtocol
        _bind_body_limits(self.routes.values(), runtime.config.server)

    # -- ASGI entry -------------------------------------------------------------------------
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.runtime.start()
                except Exception as exc:
                    log.error("startup failed: %s", exc)
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                if self.tune_gc:
                    tune_gc()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.runtime.stop()
                await send({"type": "lifespan.shutdown.complete"})
                return

    def _request_id(self, headers: dict[str, str]) -> str:
        given = headers.get("x-request-id")
        if given and len(given) <= 128 and all(c in _ID_CHARS for c in given):
            return given
        return f"req_{self._prefix}{next(self._seq):x}"

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        request_id = self._request_id(headers)
        path: str = scope["path"]
        route = self.routes.get(path)
        name, item = path, ""
        if route is None:
            route, name, item = self._item_route(path)
        dialect = route.dialect if route is not None else OPENAI
        if self.cors is not None and "origin" in headers:
            send = _with_headers(send, self.cors.response_headers(headers["origin"]))
        try:
            if route is None:
                raise InvalidRequest(f"Unknown path '{path[:200]}'.", status=404, code="unknown_url")
            method = scope["method"]
            if method == "OPTIONS":  # a preflight, or a client asking what is allowed: no auth, no queue
                await self._options(route, headers, send, request_id)
                return
            if method not in route.methods and not (method == "HEAD" and "GET" in route.methods):
                raise InvalidRequest(f"Method {method} is not allowed on {path[:200]}; "
                                     f"use {' or '.join(sorted(route.methods))}.", status=405,
                                     code="method_not_allowed", headers=[("allow", _allowed(route.methods))])
            if self.status is not None and name in self.status.paths:
                await self._status(self.status, name, item, scope, headers, receive, send, request_id)
                return
            if route.operation is None:
                await self._plain(name, headers, scope, send, request_id, item)
                return
            await self._api(route, scope, headers, request_id, receive, send)
        except GatewayError as err:
            await self._send_error(send, err, request_id, dialect)
        except _ClientGone:
            return
        except Exception:
            log.exception("unhandled error on %s (request %s)", scope.get("path"), request_id)
            await self._send_error(send, GatewayError("Internal gateway error."), request_id, dialect)

    def _item_route(self, path: str) -> tuple[_Route | None, str, str]:
        for prefix, (route, name, slashes) in self.item_routes.items():
            if path.startswith(prefix):
                item = path[len(prefix):]
                if item and (slashes or "/" not in item):
                    return route, name, item
        return None, path, ""

    # -- API routes -------------------------------------------------------------------------
    async def _api(self, route: _Route, scope: Scope, headers: dict[str, str], request_id: str,
                   receive: Receive, send: Send) -> None:
        received_at = self.clock.now()
        _check_content_type(headers)
        body = await self._read_body(receive, headers)
        assert route.operation is not None
        request = Request(
            id=request_id, api=route.dialect.api, operation=route.operation, raw=body, headers=headers,
            client_addr=_client_addr(scope), received_at=received_at,
            deadline=received_at + self._timeout_s(headers), parse=route.parse,
        )
        task = asyncio.current_task()
        assert task is not None
        state = {"finished": False, "gone": False}

        def gone() -> None:
            if not state["finished"]:
                state["gone"] = True
                task.cancel()

        async def watch() -> None:
            message = await receive()
            while message["type"] != "http.disconnect":
                message = await receive()
            gone()

        hook = scope.get(DisconnectHook.KEY)
        watcher = None
        if hook is not None:
            hook.callback = gone
        else:
            watcher = asyncio.get_running_loop().create_task(watch())
        try:
            serve = route.serve
            response = await (serve(request) if serve is not None else self.runtime.handler(request))
            if response.stream is None:
                await self._send_body(send, response, request_id, route.dialect)
            else:
                await self._send_stream(send, response, request_id, route.dialect)
        except GatewayError as err:
            await self._send_error(send, err, request_id, route.dialect)
        except asyncio.CancelledError:
            if not state["gone"]:
                raise
            task.uncancel()
        finally:
            state["finished"] = True
            if hook is not None:
                hook.callback = None
            if watcher is not None:
                watcher.cancel()

    def _timeout_s(self, headers: dict[str, str]) -> float:
        value = headers.get("x-request-timeout")
        if value is None:
            return self._sdk_timeout_s(headers.get("x-stainless-timeout"))
        try:
            timeout_s = float(value)
        except ValueError:
            raise InvalidRequest("'x-request-timeout' must be a number of seconds.",
                                 param="x-request-timeout") from None
        if not timeout_s > 0 or math.isinf(timeout_s):
            raise InvalidRequest("'x-request-timeout' must be positive.", param="x-request-timeout")
        return min(timeout_s, self.max_timeout_s)

    def _sdk_timeout_s(self, value: str | None) -> float:
        """The SDKs' own timeout hint, used when it is a positive number and ignored otherwise: it is
        not ours to validate (the anthropic SDK sends ``NOT_GIVEN`` when the client has a timeout)."""
        try:
            timeout_s = float(value) if value is not None else math.nan
        except ValueError:
            return self.default_timeout_s
        return min(timeout_s, self.max_timeout_s) if 0 < timeout_s < math.inf else self.default_timeout_s

    async def _read_body(self, receive: Receive, headers: dict[str, str]) -> bytes:
        limit = self.max_body_bytes
        length = headers.get("content-length")
        if length is not None:
            if not length.isdigit():
                raise InvalidRequest("Invalid content-length header.")
            if int(length) > limit:
                raise PayloadTooLarge(f"Request body is larger than the limit of {limit} bytes.")
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _ClientGone
        body: bytes = message.get("body", b"")
        if not message.get("more_body"):
            if len(body) > limit:
                raise PayloadTooLarge(f"Request body is larger than the limit of {limit} bytes.")
            return body
        chunks = [body]
        size = len(body)
        while message.get("more_body"):
            message = await receive()
            if message["type"] == "http.disconnect":
                raise _ClientGone
            part = message.get("body", b"")
            size += len(part)
            if size > limit:
                raise PayloadTooLarge(f"Request body is larger than the limit of {limit} bytes.")
            chunks.append(part)
        return b"".join(chunks)

    # -- sending ----------------------------------------------------------------------------
    async def _send_body(self, send: Send, response: Response, request_id: str,
                         dialect: _Dialect = OPENAI) -> None:
        headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in response.headers]
        headers.append((b"x-request-id", request_id.encode()))
        if dialect is ANTHROPIC:  # the anthropic SDK reads request-id (its errors already carry it)
            headers.append((b"request-id", request_id.encode()))
        headers.append((b"content-length", str(len(response.body)).encode()))
        await send({"type": "http.response.start", "status": response.status, "headers": headers})
        await send({"type": "http.response.body", "body": response.body})

    async def _send_stream(self, send: Send, response: Response, request_id: str,
                           dialect: _Dialect) -> None:
        assert response.stream is not None
        headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in response.headers]
        headers.append((b"x-request-id", request_id.encode()))
        if dialect is ANTHROPIC:
            headers.append((b"request-id", request_id.encode()))
        await send({"type": "http.response.start", "status": response.status, "headers": headers})
        stream = response.stream
        try:
            async for event in stream:
                await send({"type": "http.response.body", "body": event, "more_body": True})
        except GatewayError as err:
            await send({"type": "http.response.body", "body": dialect.event(err), "more_body": True})
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("stream failed (request %s)", request_id)
            internal = GatewayError("Internal gateway error mid-stream.")
            body = dialect.event(internal)
            await send({"type": "http.response.body", "body": body, "more_body": True})
        finally:
            aclose = getattr(stream, "aclose", None)
            if aclose is not None:
                await aclose()
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _send_error(self, send: Send, err: GatewayError, request_id: str,
                          dialect: _Dialect = OPENAI) -> None:
        body = dialect.body(err, request_id)
        headers = [_JSON_CT, (b"x-request-id", request_id.encode()),
                   (b"content-length", str(len(body)).encode()), *error_headers(err)]
        if dialect is ANTHROPIC:
            headers.append((b"request-id", request_id.encode()))
        await send({"type": "http.response.start", "status": dialect.status(err), "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def _send_json(self, send: Send, status: int, body: bytes, request_id: str,
                         content_type: bytes = b"application/json") -> None:
        headers = [(b"content-type", content_type), (b"x-request-id", request_id.encode()),
                   (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def _options(self, route: _Route, headers: dict[str, str], send: Send, request_id: str) -> None:
        out = [(b"allow", (_allowed(route.methods) + ", OPTIONS").encode()), (b"x-request-id", request_id.encode()),
               (b"content-length", b"0")]
        origin = headers.get("origin")
        if self.cors is not None and origin is not None and "access-control-request-method" in headers:
            out += self.cors.preflight_headers(origin, headers.get("access-control-request-headers", ""))
        await send({"type": "http.response.start", "status": 204, "headers": out})
        await send({"type": "http.response.body", "body": b""})

    async def _status(self, status: StatusRoutes, path: str, item: str, scope: Scope, headers: dict[str, str],
                      receive: Receive, send: Send, request_id: str) -> None:
        method = scope["method"]
        if path in status.public:
            code, out, body = status.page(path)
        else:
            payload = await self._read_body(receive, headers) if method == "POST" else b""
            code, out, body = await status.admin(method, path, item, headers, payload, _client_addr(scope))
        out = [*out, (b"x-request-id", request_id.encode()), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": code, "headers": out})
        await send({"type": "http.response.body", "body": body})

    # -- operational routes -----------------------------------------------------------------
    async def _plain(self, path: str, headers: dict[str, str], scope: Scope, send: Send,
                     request_id: str, item: str = "") -> None:
        rt = self.runtime
        if path == "/healthz":
            await self._send_json(send, 200, b'{"status":"ok"}', request_id)
        elif path == "/readyz":
            ready, state = rt.readiness()
            await self._send_json(send, 200 if ready else 503, msgspec.json.encode(state), request_id)
        elif path == "/metrics":
            await self._send_json(send, 200, rt.metrics.render(), request_id,
                                  CONTENT_TYPE_LATEST.encode())
        elif path == "/admin/admission":
            principal = rt.auth.authenticate(headers, _client_addr(scope))
            if not principal.admin:
                raise PermissionDenied("This endpoint needs the admin key.", code="admin_only")
            await self._send_json(send, 200, msgspec.json.encode(rt.admission_state()), request_id)
        elif path == "/v1/models":
            principal = rt.auth.authenticate(headers, _client_addr(scope))
            groups = rt.router.groups if rt.router is not None else {}
            data = [{"id": name, "object": "model", "created": 0, "owned_by": "seawall"}
                    for name in groups if principal.may_use(name)]
            await self._send_json(send, 200, msgspec.json.encode({"object": "list", "data": data}),
                                  request_id)
        elif path == "/openapi.json":
            await self._send_json(send, 200, self._openapi, request_id)
        elif path == "/v1/models/{id}":
            principal = rt.auth.authenticate(headers, _client_addr(scope))
            groups = rt.router.groups if rt.router is not None else {}
            if item not in groups or not principal.may_use(item):  # a forbidden model is not revealed
                raise ModelNotFound(f"The model '{item[:200]}' does not exist.", param="model")
            model = {"id": item, "object": "model", "created": 0, "owned_by": "seawall"}
            await self._send_json(send, 200, msgspec.json.encode(model), request_id)
        elif path == "/v1/responses/{id}":
            addr = _client_addr(scope)
            if scope["method"] == "DELETE":
                body = await self.responses.delete(item, headers, addr)
            else:
                body = await self.responses.retrieve(item, headers, addr)
            await self._send_json(send, 200, body, request_id)


def _bind_body_limits(routes: Iterable[_Route], server: ServerSettings) -> None:
    """Give the body parsers the configured bounds (``server.max_messages``, ``max_output_tokens``)."""
    limits = openai.BodyLimits(server.max_messages, server.max_output_tokens)
    bound: dict[Any, Callable[[bytes], Payload]] = {
        openai.parse_chat: functools.partial(openai.parse_chat, limits=limits),
        anthropic.parse_messages: functools.partial(anthropic.parse_messages, limits=limits),
    }
    for route in routes:
        route.parse = bound.get(route.parse, route.parse)


def _allowed(methods: frozenset[str]) -> str:
    """The ``allow`` header of a route: GET routes answer HEAD too."""
    return ", ".join(sorted(methods | {"HEAD"} if "GET" in methods else methods))


def _with_headers(send: Send, extra: list[tuple[bytes, bytes]]) -> Send:
    """``send`` with ``extra`` added to the response head (CORS on an allowed origin's answers)."""
    if not extra:
        return send

    async def sending(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message["headers"], *extra]}
        await send(message)

    return sending


def _client_addr(scope: Scope) -> str:
    client = scope.get("client")
    return str(client[0]) if client else "unknown"


def _check_content_type(headers: dict[str, str]) -> None:
    ctype = headers.get("content-type", "")
    media = ctype.partition(";")[0].strip().lower()
    if media != "application/json" and not media.endswith("+json"):
        raise InvalidRequest(
            f"Content-Type must be application/json (got '{ctype[:100] or 'none'}').",
            status=415, code="unsupported_media_type", reason="bad_content_type",
        )


class DisconnectHook:
    """Where the app leaves what to call if the client goes away before its response is complete."""

    KEY = "seawall.disconnect"
    __slots__ = ("callback",)

    def __init__(self) -> None:
        self.callback: Callable[[], None] | None = None


class CoalescingWriter:
    """A response's writes to its connection, with the head held back until the first body write.

    uvicorn writes the status line and headers as soon as ``http.response.start`` is sent, then the
    body: two sends and two segments, so the client wakes twice for every answer. Held back, the
    head leaves with the body (or with a stream's first event) in one send. Anything else asked of
    the transport first sends what is held. A ``100 Continue`` is never held.
    """

    __slots__ = ("_held", "_transport")

    def __init__(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        self._held: bytes | None = b""  # b"": nothing written yet; None: the head has gone out

    def write(self, data: bytes) -> None:
        held = self._held
        if held is None:
            self._transport.write(data)
        elif held:
            self._held = None
            self._transport.write(held + data)
        elif data.startswith(b"HTTP/1.1 100 "):
            self._transport.write(data)
        else:
            self._held = data

    def flush(self) -> None:
        if self._held:
            self._transport.write(self._held)
        self._held = None

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        self.flush()
        return getattr(self._transport, name)


class HttpProtocol(LimitedHttpProtocol):
    """uvicorn's httptools protocol with the connection limits of :mod:`seawall.edges.http_limits`,
    plus a :class:`DisconnectHook` in each request's scope and a :class:`CoalescingWriter` under each
    response.

    ASGI tells an app about a disconnect only through ``receive()``, so noticing one mid-request
    costs a task per request waiting there. Here the connection's loss calls the hook instead
    (docs/decisions.md, "The server edge").
    """

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.scope[DisconnectHook.KEY] = DisconnectHook()  # type: ignore[literal-required]

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        cycle = self.cycle
        # A HEAD response has no body write to carry its held head: never hold it back.
        if cycle is not None and cycle.transport is self.transport and self.scope["method"] != "HEAD":
            cycle.transport = CoalescingWriter(self.transport)  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        cycle = self.cycle
        pending = cycle is not None and not cycle.response_complete
        super().connection_lost(exc)
        if pending and cycle is not None:
            hook = cycle.scope.get(DisconnectHook.KEY)
            if isinstance(hook, DisconnectHook) and hook.callback is not None:
                hook.callback()
