"""A lean HTTP/1.1 client for the upstream hot path: one keep-alive pool per deployment.

Why not aiohttp's client here: it is general (cookies, redirects, proxies, tracing, multipart) and
that generality costs about as much CPU per request as all of seawall's policies together
(docs/decisions.md, "The upstream HTTP client"). A gateway forwards one POST to one origin it
knows at start-up, so this client does only that, on asyncio's transports and the ``httptools``
parser (llhttp, the parser uvicorn already uses for the server side):

- a pool of keep-alive connections per origin, bounded by ``max_connections`` (callers wait for a
  free one), idle connections closed after ``keepalive_s`` or when the server closes them;
- timeouts: ``connect_s`` to open a connection, ``read_s`` between two reads from the socket
  (a stalled upstream), and ``total_s`` for the whole exchange including the body or stream;
- cancellation: closing a response that was not read to its end, or cancelling the task awaiting
  it, closes the connection, so the upstream sees the disconnect and stops generating;
- bounded memory: response heads up to ``MAX_HEAD_BYTES``, buffered bodies up to
  ``max_body_bytes``; a stream stops reading from the socket once over ``HIGH_WATER`` bytes wait
  for the consumer (so at most that plus one socket read, 256 KiB, are buffered);
- ``gzip``/``deflate`` bodies are decoded (``identity`` is asked for, but not every server obliges).

Failures are :class:`HttpError` subclasses whose ``kind`` is what the response classifier reads:
``connect``, ``timeout``, ``read`` or ``protocol``.
"""

from __future__ import annotations

import asyncio
import collections
import ssl
import zlib
from collections.abc import AsyncIterator, Mapping
from typing import cast
from urllib.parse import urlsplit

import httptools

__all__ = [
    "ConnectFailed",
    "HttpClient",
    "HttpError",
    "HttpResponse",
    "HttpTimeout",
    "ProtocolViolation",
    "ReadFailed",
]

MAX_HEAD_BYTES = 64 * 1024
HIGH_WATER = 256 * 1024  # buffered stream bytes at which the socket stops being read
DRAIN_S = 1.0  # how long a released response may take to finish before its connection is closed


class HttpError(Exception):
    kind = "read"


class ConnectFailed(HttpError):
    kind = "connect"


class HttpTimeout(HttpError):
    kind = "timeout"


class ReadFailed(HttpError):
    kind = "read"


class ProtocolViolation(HttpError):
    kind = "protocol"


class HttpResponse:
    """One response, read from its connection as it arrives.

    ``status`` and ``headers`` (names in lower case) are there when :meth:`HttpClient.post` returns.
    Read the body whole with :meth:`read` or as it arrives with :meth:`chunks`; then :meth:`release`
    returns the connection to the pool (only if the body was read to its end; otherwise it is
    closed), and :meth:`close` always closes it.
    """

    __slots__ = (
        "_buffered",
        "_chunks",
        "_conn",
        "_decoder",
        "_done",
        "_error",
        "_waiter",
        "headers",
        "status",
    )

    def __init__(self, conn: _Connection) -> None:
        self._conn: _Connection | None = conn
        self.status = 0
        self.headers: dict[str, str] = {}
        self._chunks: collections.deque[bytes] = collections.deque()
        self._buffered = 0
        self._done = False
        self._error: HttpError | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._decoder: zlib._Decompress | None = None

    # -- reading ----------------------------------------------------------------------------------
    async def read(self) -> bytes:
        """The whole body (decoded), waiting for its end."""
        while not self._done:
            if self._error is not None:
                raise self._error
            await self._wait()
        if self._error is not None:
            raise self._error
        body = b"".join(self._chunks)
        self._chunks.clear()
        self._buffered = 0
        return body

    async def chunks(self) -> AsyncIterator[bytes]:
        """The body as it arrives (decoded), one piece per socket read or less often."""
        while True:
            if self._chunks:
                data = self._chunks.popleft() if len(self._chunks) == 1 else b"".join(self._chunks)
                self._chunks.clear()
                self._buffered = 0
                conn = self._conn
                if conn is not None and conn.paused:
                    conn.resume()
                yield data
            elif self._error is not None:
                raise self._error
            elif self._done:
                return
            else:
                await self._wait()

    @property
    def complete(self) -> bool:
        return self._done and self._error is None

    def release(self) -> None:
        """Give the connection back once the body is read to its end; close it on an error.

        A body the caller stopped reading just before its end (a stream's last event arrived, the
        chunked terminator not yet) is drained for up to ``DRAIN_S``, then the connection is reused.
        """
        conn, self._conn = self._conn, None
        if conn is None:
            return
        if self._error is None and not self._done:
            conn.drain()
        else:
            conn.finish(reuse=self._error is None)

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.finish(reuse=False)

    # -- fed by the connection ----------------------------------------------------------------
    def _wait(self) -> asyncio.Future[None]:
        waiter = self._waiter
        if waiter is None or waiter.done():
            waiter = self._waiter = asyncio.get_running_loop().create_future()
        return waiter

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    def _feed(self, data: bytes) -> None:
        if self._decoder is not None:
            try:
                data = self._decoder.decompress(data)
            except zlib.error:
                self._fail(ProtocolViolation("undecodable compressed body"))
                return
            if not data:
                return
        self._chunks.append(data)
        self._buffered += len(data)
        self._wake()

    def _finish(self) -> None:
        if self._decoder is not None:
            tail = self._decoder.flush()
            if tail:
                self._chunks.append(tail)
                self._buffered += len(tail)
        self._done = True
        self._wake()

    def _fail(self, err: HttpError) -> None:
        if self._error is None and not self._done:
            self._error = err
        self._wake()


class _Connection(asyncio.Protocol):
    """One keep-alive connection; at most one request at a time (no pipelining)."""

    def __init__(self, pool: HttpClient) -> None:
        self.pool = pool
        self.loop = pool.loop
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.response: HttpResponse | None = None
        self.head_waiter: asyncio.Future[None] | None = None
        self.head_done = False
        self.head_bytes = 0
        self.header_name = b""
        self.headers: dict[str, str] = {}
        self.framed = False  # content-length or chunked: the end of the body is in the stream
        self.body_limit = pool.max_body_bytes
        self.body_bytes = 0
        self.streaming = False
        self.last_read = 0.0
        self.read_s = 0.0
        self.timer: asyncio.TimerHandle | None = None
        self.total_timer: asyncio.TimerHandle | None = None
        self.idle_since = 0.0
        self.paused = False
        self.closed = False
        self.draining = False
        self.keep_alive = False

    # -- asyncio.Protocol -------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass, but quacks

    def data_received(self, data: bytes) -> None:
        if self.response is None:
            self.close()  # bytes nobody asked for: the connection cannot be trusted any more
            return
        self.last_read = self.loop.time()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:
            cause = exc.__context__
            self._fail(cause if isinstance(cause, HttpError) else ProtocolViolation(str(exc)))
        except httptools.HttpParserError as exc:
            self._fail(ProtocolViolation(f"malformed response: {exc}"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._cancel_timers()
        self.pool.forget(self)
        if self.response is not None and not self.response._done:
            if self.head_done and not self.framed and exc is None:
                self.on_message_complete()  # a body delimited by the end of the connection
            else:
                self._fail(ReadFailed("connection closed by the upstream" if exc is None
                                      else f"connection lost: {type(exc).__name__}"))

    # -- httptools callbacks --------------------------------------------------------------------
    def on_message_begin(self) -> None:
        if self.head_done:
            raise ProtocolViolation("bytes after the end of the response")

    def on_header(self, name: bytes, value: bytes) -> None:
        self.head_bytes += len(name) + len(value) + 4
        if self.head_bytes > MAX_HEAD_BYTES:
            raise ProtocolViolation(f"response head over {MAX_HEAD_BYTES} bytes")
        if name:
            self.header_name = name
            key = name.decode("latin-1").lower()
        else:  # llhttp may split one header across reads; the value continues
            key = self.header_name.decode("latin-1").lower()
        text = value.decode("latin-1")
        old = self.headers.get(key)
        self.headers[key] = text if old is None else (old + text if not name else f"{old}, {text}")

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        if 100 <= status < 200:
            self.headers = {}
            self.head_bytes = 0
            return  # an interim response; the real one follows
        response = self.response
        assert response is not None
        response.status = status
        response.headers = headers = self.headers
        self.framed = "content-length" in headers or "chunked" in headers.get("transfer-encoding", "")
        encoding = headers.get("content-encoding", "identity").strip().lower()
        if encoding in ("gzip", "x-gzip"):
            response._decoder = zlib.decompressobj(16 + zlib.MAX_WBITS)
        elif encoding == "deflate":
            response._decoder = zlib.decompressobj()
        elif encoding not in ("identity", ""):
            raise ProtocolViolation(f"unsupported content-encoding '{encoding}'")
        self.keep_alive = self.parser.should_keep_alive()  # only meaningful before the message ends
        self.head_done = True
        waiter = self.head_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def on_body(self, body: bytes) -> None:
        response = self.response
        assert response is not None
        if self.draining:
            return
        self.body_bytes += len(body)
        if not self.streaming and self.body_bytes > self.body_limit:
            raise ProtocolViolation(f"response body over {self.body_limit} bytes")
        response._feed(body)
        if self.streaming and response._buffered > HIGH_WATER and not self.paused and self.transport:
            self.paused = True
            self.transport.pause_reading()

    def on_message_complete(self) -> None:
        if not self.head_done:
            return  # the end of an interim (1xx) response
        response = self.response
        assert response is not None
        self._cancel_timers()
        response._finish()
        if self.draining:
            self.finish(reuse=True)

    # -- one exchange ---------------------------------------------------------------------------
    def start(self, response: HttpResponse, request: bytes, *, read_s: float, total_s: float) -> None:
        self.response = response
        self.head_waiter = self.loop.create_future()
        self.head_done = False
        self.head_bytes = 0
        self.headers = {}
        self.header_name = b""
        self.body_bytes = 0
        self.read_s = read_s
        now = self.loop.time()
        self.last_read = now
        self.timer = self.loop.call_at(now + read_s, self._check_read)
        self.total_timer = self.loop.call_at(now + total_s, self._on_total)
        assert self.transport is not None
        self.transport.write(request)

    def _check_read(self) -> None:
        self.timer = None
        if self.response is None or self.closed:
            return
        due = self.last_read + self.read_s
        if self.paused or due > self.loop.time():  # progress, or waiting for our own consumer
            if self.paused:
                due = self.loop.time() + self.read_s
            self.timer = self.loop.call_at(due, self._check_read)
            return
        self._fail(HttpTimeout(f"no data from the upstream for {self.read_s:g} s"))

    def _on_total(self) -> None:
        self.total_timer = None
        if self.response is not None and not self.closed:
            self._fail(HttpTimeout("the exchange took longer than its total timeout"))

    def _fail(self, err: HttpError) -> None:
        response = self.response
        waiter = self.head_waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(err)
        if response is not None:
            response._fail(err)
        self.close()

    def drain(self) -> None:
        """Read the rest of the body into nothing, then go back to the pool (or close after DRAIN_S)."""
        response = self.response
        if response is None or self.closed:
            self.finish(reuse=False)
            return
        self.draining = True
        self.streaming = True
        response._chunks.clear()
        response._buffered = 0
        if self.total_timer is not None:
            self.total_timer.cancel()
        self.total_timer = self.loop.call_later(DRAIN_S, self.close)
        self.resume()

    def resume(self) -> None:
        if self.paused and self.transport is not None and not self.closed:
            self.paused = False
            self.transport.resume_reading()

    def finish(self, *, reuse: bool) -> None:
        """The exchange is over: back to the pool if the connection can carry another, else close."""
        self._cancel_timers()
        self.response = None
        self.head_waiter = None
        self.draining = False
        if reuse and not self.closed and self.keep_alive:
            self.resume()
            self.pool.give_back(self)
        else:
            self.close()  # its pool slot is freed in connection_lost

    def close(self) -> None:
        self._cancel_timers()
        if not self.closed:
            self.closed = True
            if self.transport is not None:
                self.transport.close()

    def _cancel_timers(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.total_timer is not None:
            self.total_timer.cancel()
            self.total_timer = None


class HttpClient:
    """Keep-alive connections to one origin (``scheme://host:port`` of ``base_url``)."""

    def __init__(self, base_url: str, *, max_connections: int = 256, keepalive_s: float = 30.0,
                 max_body_bytes: int = 256 * 1024 * 1024, ssl_context: ssl.SSLContext | None = None) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {base_url!r}")
        self.origin = f"{parts.scheme}://{parts.netloc}"
        self.host = parts.hostname
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.ssl: ssl.SSLContext | None = None
        if parts.scheme == "https":
            self.ssl = ssl_context or ssl.create_default_context()
        host_header = parts.netloc.rpartition("@")[2]
        self._head_start = f"\r\nhost: {host_header}\r\naccept-encoding: identity\r\n".encode("latin-1")
        self.max_connections = max_connections
        self.keepalive_s = keepalive_s
        self.max_body_bytes = max_body_bytes
        self._loop: asyncio.AbstractEventLoop | None = None
        self._idle: list[_Connection] = []
        self._open = 0  # connections open or being opened (the pool's count against its limit)
        self._slot_waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        self._closed = False

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        return self._loop

    async def post(self, url: str, body: bytes, headers: Mapping[str, str], *, connect_s: float, read_s: float,
                   total_s: float, stream: bool = False) -> HttpResponse:
        """Send ``POST url`` and return once the response head arrived (the body follows).

        ``stream``: the body will be read with :meth:`HttpResponse.chunks` as it arrives, so it has
        no size limit; the socket is paused instead while the consumer falls behind.
        """
        if not url.startswith(self.origin):
            raise ValueError(f"{url!r} is not on {self.origin}")
        target = url[len(self.origin):] or "/"
        lines = "".join([f"{k}: {v}\r\n" for k, v in headers.items()])
        if "\r" in target or "\n" in target or lines.count("\n") != len(headers) or "\r\n\r\n" in lines:
            raise ValueError("line breaks in a request header or target")
        request = b"".join([b"POST ", target.encode("latin-1"), b" HTTP/1.1", self._head_start,
                            lines.encode("latin-1"), b"content-length: ", str(len(body)).encode(),
                            b"\r\n\r\n", body])
        loop = self.loop
        started = loop.time()
        conn = await self._acquire(connect_s, started + total_s)
        response = HttpResponse(conn)
        try:
            conn.streaming = stream
            conn.start(response, request, read_s=read_s, total_s=max(0.0, started + total_s - loop.time()))
            assert conn.head_waiter is not None
            await conn.head_waiter
        except BaseException:
            response.close()
            raise
        return response

    async def close(self) -> None:
        self._closed = True
        for conn in self._idle:
            conn.close()
        self._idle.clear()
        for waiter in self._slot_waiters:
            if not waiter.done():
                waiter.set_exception(ConnectFailed("the client is closed"))
        self._slot_waiters.clear()

    # -- the pool -----------------------------------------------------------------------------
    async def _acquire(self, connect_s: float, deadline: float) -> _Connection:
        loop = self.loop
        idle = self._idle
        while idle:
            conn = idle.pop()
            if not conn.closed and loop.time() - conn.idle_since < self.keepalive_s:
                return conn
            conn.close()  # counted free by connection_lost -> forget
        if self._closed:
            raise ConnectFailed("the client is closed")
        while self._open >= self.max_connections:
            waiter = loop.create_future()
            self._slot_waiters.append(waiter)
            try:
                async with asyncio.timeout_at(deadline):
                    await waiter
            except TimeoutError:
                raise HttpTimeout(f"no free connection within the timeout ({self.max_connections} in use)") from None
            finally:
                if waiter in self._slot_waiters:
                    self._slot_waiters.remove(waiter)
            while idle:  # a connection came back while we waited
                conn = idle.pop()
                if not conn.closed:
                    return conn
        self._open += 1
        try:
            async with asyncio.timeout_at(min(deadline, loop.time() + connect_s)):
                _, conn = await loop.create_connection(
                    lambda: _Connection(self), self.host, self.port, ssl=self.ssl,
                    server_hostname=self.host if self.ssl else None,
                )
        except TimeoutError:
            self._release_slot()
            raise HttpTimeout(f"connecting to {self.origin} took over {connect_s:g} s") from None
        except (OSError, ssl.SSLError) as exc:
            self._release_slot()
            raise ConnectFailed(f"cannot connect to {self.origin}: {type(exc).__name__}") from None
        except BaseException:
            self._release_slot()
            raise
        return conn

    def give_back(self, conn: _Connection) -> None:
        if self._closed:
            conn.close()
            return
        conn.idle_since = self.loop.time()
        waiters = self._slot_waiters
        self._idle.append(conn)
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                break

    def forget(self, conn: _Connection) -> None:
        """``conn`` is gone (closed by either side): drop it from the idle list and free its slot."""
        if conn in self._idle:
            self._idle.remove(conn)
        self._release_slot()

    def _release_slot(self) -> None:
        self._open -= 1
        waiters = self._slot_waiters
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                break
