"""uvicorn's httptools protocol with bounds on what one client connection may cost.

uvicorn bounds none of these on its httptools protocol: a request head of any size and header count
(llhttp buffers a header until it ends), a connection that sends nothing or one byte a second
(slowloris), a body that trickles in for ever (slow POST). Each would pin a connection, its memory
and, for a body, a request slot. Here (``server.*`` in the config, defaults in
:class:`ConnectionLimits`):

- the head (request line and headers) is refused with 431 past ``max_header_bytes`` (counted as the
  bytes arrive, so nothing is buffered beyond the bound, and as the headers are parsed, for a head
  that arrives in one piece) or ``max_header_count``, and the URL with 414 past ``max_url_bytes``;
- a head must be complete ``header_timeout_s`` after the connection opened (first request) or after
  its first byte (later requests; between requests uvicorn's keep-alive timeout applies); a body may
  be silent at most ``body_idle_timeout_s`` and must be complete ``body_timeout_s`` after its head.
  Past either: 408 if no response has started, and the connection is closed (the request in flight
  is cancelled as for any disconnect); a connection that sent nothing is closed without an answer.
  A client held back by our own flow control is never timed out;
- a response the client stops reading (the transport's buffer full, our writes paused) for
  ``response_stall_timeout_s`` closes the connection, which cancels the request and frees its
  upstream slot (without it, the request's deadline freed the upstream but the connection and the
  task writing to it stayed for as long as the client kept the socket open);
- bytes llhttp refuses (request smuggling: Content-Length with Transfer-Encoding, duplicate or
  invalid Content-Length, an obfuscated Transfer-Encoding; NUL or control bytes in the head; a bad
  request line) get uvicorn's 400, in OpenAI's JSON error format instead of plain text.

Every refusal closes the connection (``connection: close``): after a framing error nothing later on
it can be trusted. At most one timer per connection, never cancelled on the request path: it is
armed no further ahead than the shortest timeout and re-arms itself, so a busy keep-alive
connection creates one every ``header_timeout_s`` instead of one per request, and a body chunk only
notes its time.
"""

from __future__ import annotations

import asyncio
import http
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from seawall.core.errors import InvalidRequest
from seawall.providers import openai

if TYPE_CHECKING:
    from seawall.config.schema import ServerSettings

__all__ = ["ConnectionLimits", "LimitedHttpProtocol"]


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    """What one client connection may cost; the fields and defaults of ``server.*`` of the same names."""

    max_header_bytes: int = 32 * 1024
    max_header_count: int = 100
    max_url_bytes: int = 8 * 1024
    header_timeout_s: float = 10.0
    body_idle_timeout_s: float = 15.0
    body_timeout_s: float = 120.0
    response_stall_timeout_s: float = 30.0

    @classmethod
    def of(cls, server: ServerSettings) -> ConnectionLimits:
        return cls(server.max_header_bytes, server.max_header_count, server.max_url_bytes,
                   server.header_timeout_s, server.body_idle_timeout_s, server.body_timeout_s,
                   server.response_stall_timeout_s)


DEFAULT_LIMITS = ConnectionLimits()
_HEAD, _BODY = 1, 2  # the phase a connection's timer watches (0: none, between requests)
_BAD_HTTP = (400, "invalid_http", "The request is not valid HTTP/1.1 (its framing headers, request line or "
             "header bytes were refused); the connection is closed.")


class _Refused(Exception):
    """Raised in a parser callback to stop the parse; uvicorn then calls ``send_400_response``."""


def limits_of(app: Any) -> ConnectionLimits:
    """The limits of the app uvicorn serves (``connection_limits``), looking through any wrappers."""
    for _ in range(8):
        limits = getattr(app, "connection_limits", None)
        if isinstance(limits, ConnectionLimits):
            return limits
        app = getattr(app, "app", None)
        if app is None:
            break
    return DEFAULT_LIMITS


def refusal(status: int, code: str, message: str) -> bytes:
    """A complete response closing the connection, with an OpenAI-format error body."""
    body = openai.error_body(InvalidRequest(message, status=status, code=code))
    phrase = http.HTTPStatus(status).phrase
    return (f"HTTP/1.1 {status} {phrase}\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n"
            f"x-seawall-reason: {code}\r\nconnection: close\r\n\r\n").encode() + body


class LimitedHttpProtocol(HttpToolsProtocol):
    """:class:`HttpToolsProtocol` with :class:`ConnectionLimits` (see the module's docstring)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        limits = self.limits = limits_of(self.app)
        # No timer is armed further ahead than this, so one armed for an earlier phase never fires
        # later than the current phase's deadline: nothing to cancel when a phase ends or begins.
        self._horizon_s = min(limits.header_timeout_s, limits.body_idle_timeout_s, limits.body_timeout_s,
                              limits.response_stall_timeout_s)
        self._refusal: tuple[int, str, str] | None = None
        self._phase = 0
        self._head_bytes = 0  # bytes of this head in the reads before the current one
        self._read_bytes = 0  # the current read's size
        self._started_s = 0.0  # the phase's start (loop time)
        self._progress_s = 0.0  # the body's last bytes (loop time)
        self._stalled_s: float | None = None  # since when the client has not read what we wrote
        self._timer: asyncio.TimerHandle | None = None

    # -- timers ------------------------------------------------------------------------------
    def _watch(self, phase: int) -> None:
        self._phase = phase
        self._started_s = self._progress_s = self.loop.time()
        self._arm()

    def _arm(self) -> None:
        if self._timer is None:
            self._timer = self.loop.call_at(min(self._due_s(), self.loop.time() + self._horizon_s), self._on_timer)

    def _due_s(self) -> float:
        limits = self.limits
        due = math.inf
        if self._phase == _HEAD:
            due = self._started_s + limits.header_timeout_s
        elif self._phase == _BODY:
            due = min(self._progress_s + limits.body_idle_timeout_s, self._started_s + limits.body_timeout_s)
        if self._stalled_s is not None:
            due = min(due, self._stalled_s + limits.response_stall_timeout_s)
        return due

    def _on_timer(self) -> None:
        self._timer = None
        if self.transport is None or self.transport.is_closing():
            return
        now = self.loop.time()
        if self.flow is not None and self.flow.read_paused:  # we stopped reading, not the client
            self._progress_s = now
        due = self._due_s()
        if due == math.inf:
            return  # between requests, nothing stalled: the next phase arms it again
        if due > now:
            self._timer = self.loop.call_at(min(due, now + self._horizon_s), self._on_timer)
            return
        if self._stalled_s is not None and now - self._stalled_s >= self.limits.response_stall_timeout_s:
            self._phase = 0  # a client that stopped reading our response: nothing more can reach it
            self.transport.abort()  # close() would wait for the unread buffer to drain: for ever
            return
        if self._phase == _HEAD and self._head_bytes == 0:  # nothing sent: nothing to answer
            self._phase = 0
            self.transport.close()
            return
        if self._phase == _HEAD:
            self._refuse_now(408, "request_timeout",
                             f"The request head did not arrive within {self.limits.header_timeout_s:g} s.")
            return
        silent = now - self._progress_s >= self.limits.body_idle_timeout_s
        self._refuse_now(408, "request_timeout", (
            f"The request body stopped arriving for {self.limits.body_idle_timeout_s:g} s." if silent else
            f"The request body did not arrive within {self.limits.body_timeout_s:g} s."))

    def _refuse_now(self, status: int, code: str, message: str) -> None:
        """Answer (unless a response has started) and close; a request in flight sees a disconnect."""
        self._phase = 0
        cycle = self.cycle
        if cycle is None or cycle.response_complete or not cycle.response_started:
            self.transport.write(refusal(status, code, message))
        self.transport.close()

    def _head_too_large(self) -> bool:
        """Past ``max_header_bytes``? Exact only when the reads so far could be (one sum, rarely)."""
        limit = self.limits.max_header_bytes
        if self._head_bytes + self._read_bytes <= limit:
            return False
        return len(self.url) + sum(len(name) + len(value) + 4 for name, value in self.headers) > limit

    # -- uvicorn's protocol ------------------------------------------------------------------
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._watch(_HEAD)

    def connection_lost(self, exc: Exception | None) -> None:
        self._phase = 0
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        self._read_bytes = len(data)
        super().data_received(data)
        if self._phase == _HEAD:
            self._head_bytes += len(data)  # a read that also began this head counts whole: a bound
            if self._head_bytes > self.limits.max_header_bytes and not self.transport.is_closing():
                self._refuse_now(431, "request_header_fields_too_large",
                                 f"The request head is larger than {self.limits.max_header_bytes} bytes.")
        elif self._phase == _BODY:
            self._progress_s = self.loop.time()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._head_bytes = 0
        self._watch(_HEAD)

    def on_headers_complete(self) -> None:
        # The byte count above bounds what llhttp buffers (an unfinished header included); these
        # checks run once per head, before uvicorn starts the app.
        limits = self.limits
        if len(self.url) > limits.max_url_bytes:
            self._refusal = (414, "uri_too_long", f"The URL is longer than {limits.max_url_bytes} bytes.")
            raise _Refused
        if len(self.headers) > limits.max_header_count:
            self._refusal = (431, "request_header_fields_too_large",
                             f"The request has more than {limits.max_header_count} headers.")
            raise _Refused
        if self._head_too_large():
            self._refusal = (431, "request_header_fields_too_large",
                             f"The request head is larger than {limits.max_header_bytes} bytes.")
            raise _Refused
        super().on_headers_complete()
        self._watch(_BODY)

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._phase = 0  # the timer, if armed, lapses by itself

    def pause_writing(self) -> None:
        super().pause_writing()
        self._stalled_s = self.loop.time()
        self._arm()

    def resume_writing(self) -> None:
        super().resume_writing()
        self._stalled_s = None

    def send_400_response(self, msg: str) -> None:
        """uvicorn's answer to anything the parser refused, with our status and an OpenAI error body."""
        status, code, message = self._refusal or _BAD_HTTP
        self._refusal = None
        self._phase = 0
        self.transport.write(refusal(status, code, message))
        self.transport.close()
