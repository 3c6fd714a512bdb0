"""What every upstream adapter shares: settings, the contract, pooled HTTP and failure mapping.

The contract (:class:`Upstream`): ``send(request)`` returns a :class:`Response` in the *client's*
API format (``request.api``) or raises a :class:`GatewayError` that carries what the response
classifier (:func:`seawall.algorithms.outcome.classify`) reads: ``upstream_status`` when a response
head arrived, ``error_kind`` (connect, timeout, read, protocol) when the exchange did not complete.
A stream is returned only after its first event arrived, so a failure before the first byte can
still be retried elsewhere; a failure after it is raised from inside the stream iterator. Closing
or cancelling the stream closes the upstream connection, so the provider stops generating.

Every upstream answer's rate-limit headers become a headroom figure (0..1, the scarcest of the
limits it reports) and a :class:`~seawall.algorithms.pacing.RateLimitReport` (limits, remaining,
resets, ``retry-after``: what the deployment's pacer reads): on the :class:`Response`, or as
``err.headroom`` and ``err.rate_limits`` on the raised error (headroom 0 on a 429).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import msgspec

from seawall.core.errors import GatewayError, InvalidRequest, Overloaded, UpstreamError, UpstreamTimeout
from seawall.core.types import Request, Response, Usage
from seawall.edges.upstreams.http1 import ConnectFailed, HttpClient, HttpError, HttpResponse, HttpTimeout
from seawall.env import Clock
from seawall.providers.ratelimits import parse_rate_limits, parse_retry_after_s
from seawall.providers.translate import Untranslatable

_DEADLINE_SLACK_S = 0.005  # a timer set for the deadline may fire this early on the loop's clock

__all__ = [
    "ANTHROPIC_RATE_LIMITS",
    "OPENAI_RATE_LIMITS",
    "HttpUpstream",
    "Upstream",
    "UpstreamSettings",
    "headroom_from",
    "retry_after_from",
    "status_error",
    "timed_out",
]

JSON_HEADERS = [("content-type", "application/json")]
SSE_HEADERS = [("content-type", "text/event-stream"), ("cache-control", "no-cache")]

#: (remaining, limit) header pairs as OpenAI (and vLLM, Azure, most compatibles) send them.
OPENAI_RATE_LIMITS: tuple[tuple[str, str], ...] = (
    ("x-ratelimit-remaining-requests", "x-ratelimit-limit-requests"),
    ("x-ratelimit-remaining-tokens", "x-ratelimit-limit-tokens"),
)
#: Anthropic's pairs: requests, combined tokens, and the separate input/output token limits.
ANTHROPIC_RATE_LIMITS: tuple[tuple[str, str], ...] = (
    ("anthropic-ratelimit-requests-remaining", "anthropic-ratelimit-requests-limit"),
    ("anthropic-ratelimit-tokens-remaining", "anthropic-ratelimit-tokens-limit"),
    ("anthropic-ratelimit-input-tokens-remaining", "anthropic-ratelimit-input-tokens-limit"),
    ("anthropic-ratelimit-output-tokens-remaining", "anthropic-ratelimit-output-tokens-limit"),
)


@dataclass(frozen=True, slots=True)
class UpstreamSettings:
    """One deployment's connection settings; durations in seconds.

    ``model`` is the upstream's model name (``None``: the client's). ``headers`` are sent with every
    request (``OpenAI-Organization``, a proxy's routing header, the mock's ``x-mock-fault`` in tests).
    """

    name: str
    base_url: str
    model: str | None = None
    api_key: str | None = None
    connect_s: float = 5.0
    read_s: float = 60.0
    total_s: float = 600.0
    max_connections: int = 256
    headers: tuple[tuple[str, str], ...] = ()


class Upstream(Protocol):
    """An adapter to one deployment; see the module notes for the contract of ``send``."""

    name: str
    settings: UpstreamSettings

    async def send(self, request: Request) -> Response: ...

    async def close(self) -> None: ...


# ------------------------------------------------------------------------------------ response heads


def retry_after_from(headers: Mapping[str, str]) -> float | None:
    """Seconds from ``retry-after-ms`` or ``retry-after`` (delta seconds), if present and sane."""
    return parse_retry_after_s(headers)


def headroom_from(
    headers: Mapping[str, str],
    pairs: tuple[tuple[str, str], ...] = OPENAI_RATE_LIMITS + ANTHROPIC_RATE_LIMITS,
) -> float | None:
    """The scarcest ``remaining / limit`` among the rate-limit header ``pairs`` present, in [0, 1].

    ``None`` when no complete, numeric pair is present. A limit of 0 means nothing is allowed: 0.
    """
    low: float | None = None
    for remaining_name, limit_name in pairs:
        remaining = headers.get(remaining_name)
        if remaining is None:
            continue
        limit = headers.get(limit_name)
        if limit is None:
            continue
        try:
            left, cap = float(remaining), float(limit)
        except ValueError:
            continue
        if not (cap >= 0 and left == left):  # negative limits and NaN say nothing usable
            continue
        ratio = min(max(left / cap, 0.0), 1.0) if cap > 0 else 0.0
        if low is None or ratio < low:
            low = ratio
    return low


def with_headroom(err: GatewayError, headroom: float | None) -> GatewayError:
    """Attach ``headroom`` to ``err`` (the deployment reads ``getattr(err, "headroom", None)``)."""
    if headroom is not None:
        setattr(err, "headroom", headroom)  # noqa: B010 - not a declared attribute of GatewayError
    return err


class UpstreamRejected(InvalidRequest):
    """The upstream judged the client's request invalid (4xx): its status and message pass through."""

    code = "upstream_rejected"

    def __init__(self, status: int, body: bytes) -> None:
        message = "The upstream rejected the request."
        param = code = None
        try:
            err = msgspec.json.decode(body).get("error", {})
            message = str(err.get("message") or message)
            param = err.get("param") if isinstance(err.get("param"), str) else None
            # Clients branch on the upstream's code (context_length_exceeded, ...): keep it when it
            # looks like one.
            given = err.get("code")
            if isinstance(given, str) and 0 < len(given) <= 64 and given.replace("_", "").isalnum():
                code = given
        except (msgspec.DecodeError, AttributeError):
            pass
        super().__init__(message, status=status, param=param, code=code, reason="client_error",
                         upstream_status=status)


def timed_out(message: str, deadline_passed: bool) -> UpstreamTimeout:
    """The deployment's own timeout (a failure of it), or, when ``deadline_passed``, the request's
    deadline (the client's budget ran out first: neutral for the breaker, ``algorithms/outcome.py``)."""
    if deadline_passed:
        return UpstreamTimeout("The request's deadline passed while the upstream was answering.",
                               reason="deadline", error_kind="deadline")
    return UpstreamTimeout(message, reason="upstream_timeout", error_kind="timeout")


def status_error(name: str, status: int, headers: Mapping[str, str], body: bytes, *,
                 retry_after_s: float | None = None) -> GatewayError:
    """The gateway error for a non-200 upstream answer, following the response classifier's rules.

    429 and 529 (Anthropic's overload) -> :class:`Overloaded` with the upstream's retry hint;
    401/403 (the *deployment's* credentials) -> :class:`UpstreamError`; 408 -> :class:`UpstreamTimeout`;
    any other 4xx -> :class:`UpstreamRejected` (status and message passed through to the client);
    5xx and anything else -> :class:`UpstreamError` (502). All carry ``upstream_status``; a 429
    carries ``headroom`` 0, others whatever rate-limit headers came along. ``retry_after_s``: the
    hint when the caller has it already parsed (the simulator's server models), else the headers'.
    """
    err: GatewayError
    if status == 429 or status == 529:
        what = "rate limiting" if status == 429 else "overloaded"
        err = Overloaded(
            f"Upstream '{name}' is {what}; try again shortly.",
            code="upstream_rate_limited" if status == 429 else "upstream_overloaded",
            reason=f"upstream_{status}",
            retry_after_s=retry_after_s if retry_after_s is not None else retry_after_from(headers),
            upstream_status=status,
        )
    elif status in (401, 403):
        err = UpstreamError(
            f"Upstream '{name}' refused the gateway's credentials ({status}).",
            reason="upstream_auth",
            upstream_status=status,
        )
    elif status == 408:
        err = UpstreamTimeout(f"Upstream '{name}' timed out (408).", reason="upstream_timeout",
                              upstream_status=status)
    elif 400 <= status < 500:
        err = UpstreamRejected(status, body)
    else:
        err = UpstreamError(f"Upstream '{name}' answered {status}.", reason=f"upstream_{status}",
                            upstream_status=status)
    return with_headroom(err, 0.0 if status == 429 else headroom_from(headers))


def untranslatable(name: str, api: str, err: Untranslatable) -> Untranslatable:
    """``err`` restated to say which deployment cannot take the request (still a 400)."""
    return Untranslatable(
        f"Deployment '{name}' speaks the {api} API and cannot take this request: {err.message}",
        param=err.param,
    )


def protocol_error(name: str, err: GatewayError) -> GatewayError:
    """Mark a translation failure of an upstream answer as a protocol error of that upstream."""
    if err.error_kind is None and err.upstream_status is None:
        err.error_kind = "protocol"
    if not err.message.startswith("Upstream '"):
        err.message = f"Upstream '{name}': {err.message}"
        err.args = (err.message,)
    return err


# ------------------------------------------------------------------------------------------ the HTTP


class HttpUpstream:
    """Pooled HTTP for one deployment: one :class:`HttpClient` (its own keep-alive pool and limit).

    Each attempt is bounded by the connect/read/total timeouts and by the request's absolute
    deadline, whichever ends first. Subclasses build the URL, headers and body, and turn the
    answer into the client's format; :meth:`exchange` does the rest.
    """

    #: The rate-limit header pairs this provider sends (only these are looked up).
    rate_limits: tuple[tuple[str, str], ...] = OPENAI_RATE_LIMITS + ANTHROPIC_RATE_LIMITS

    def __init__(self, settings: UpstreamSettings, *, clock: Clock) -> None:
        self.settings = settings
        self.name = settings.name
        self.clock = clock
        self._http = HttpClient(settings.base_url, max_connections=settings.max_connections, keepalive_s=30.0)

    async def close(self) -> None:
        await self._http.close()

    async def exchange(
        self,
        request: Request,
        url: str,
        body: bytes,
        headers: dict[str, str],
        *,
        stream: bool,
        complete: Callable[[bytes], tuple[bytes, Usage | None]],
        events: Callable[[HttpResponse, Response], AsyncIterator[bytes]],
    ) -> Response:
        """POST ``body``; a 2xx goes through ``complete`` (whole body) or ``events`` (a stream)."""
        remaining_s = request.deadline - self.clock.now()
        if remaining_s <= 0:
            raise UpstreamTimeout("The request deadline passed before the upstream call.", reason="deadline",
                                  error_kind="timeout")
        s = self.settings
        try:
            resp = await self._http.post(url, body, headers, connect_s=s.connect_s, read_s=s.read_s,
                                         total_s=min(s.total_s, remaining_s), stream=stream)
        except HttpTimeout:
            raise self._timed_out(request, f"Upstream '{self.name}' did not answer in time.") from None
        except ConnectFailed as exc:
            raise UpstreamError(f"Upstream '{self.name}' unreachable: {exc}.",
                                reason="upstream_connect", error_kind="connect") from None
        except HttpError as exc:
            raise UpstreamError(f"Upstream '{self.name}' failed before answering: {exc}.",
                                reason="upstream_io", error_kind=exc.kind) from None
        try:
            headroom = headroom_from(resp.headers, self.rate_limits)
            report = parse_rate_limits(resp.headers, self.clock.wall())
            if resp.status // 100 != 2:
                err = status_error(self.name, resp.status, resp.headers, await resp.read())
                if report is not None:
                    setattr(err, "rate_limits", report)  # noqa: B010 - read by DeploymentHandle.attempt
                raise err
            if not stream:
                out, usage = complete(await resp.read())
                resp.release()
                response = Response(200, out, headers=list(JSON_HEADERS), usage=usage, deployment=self.name)
                response.headroom = headroom
                response.rate_limits = report
                return response
            response = Response(200, headers=list(SSE_HEADERS), deployment=self.name)
            response.headroom = headroom
            response.rate_limits = report
            framed = events(resp, response)
            first = await framed.__anext__()  # wait for the first event: failures so far are retriable
            response.stream = _prepend(first, framed)
            return response
        except HttpTimeout:
            resp.close()
            raise self._timed_out(request, f"Upstream '{self.name}' timed out.") from None
        except HttpError as exc:
            resp.close()
            raise UpstreamError(f"Upstream '{self.name}' failed: {exc}.",
                                reason="upstream_io", error_kind=exc.kind) from None
        except StopAsyncIteration:
            resp.close()
            raise UpstreamError(f"Upstream '{self.name}' sent an empty stream.",
                                reason="upstream_truncated", error_kind="read") from None
        except BaseException:
            resp.close()
            raise

    def _timed_out(self, request: Request, message: str) -> UpstreamTimeout:
        return timed_out(message, self.clock.now() >= request.deadline - _DEADLINE_SLACK_S)

    @contextlib.contextmanager
    def reading_stream(self) -> Iterator[None]:
        """Map failures while reading a stream body (after the head) to the gateway's errors."""
        try:
            yield
        except HttpTimeout:
            raise UpstreamTimeout(f"Upstream '{self.name}' stalled mid-stream.",
                                  reason="upstream_stall", error_kind="timeout") from None
        except HttpError as exc:
            raise UpstreamError(f"Upstream '{self.name}' broke the stream: {exc}.",
                                reason="upstream_io", error_kind=exc.kind) from None
        except ValueError as exc:  # an SSE event over the size bound, undecodable JSON
            raise UpstreamError(f"Upstream '{self.name}' sent a malformed stream: {exc}",
                                reason="upstream_malformed", error_kind="protocol") from None

    def truncated(self) -> UpstreamError:
        return UpstreamError(f"Upstream '{self.name}' ended the stream early.",
                             reason="upstream_truncated", error_kind="read")

    def malformed(self) -> UpstreamError:
        return UpstreamError(f"Upstream '{self.name}' sent a malformed response.",
                             reason="upstream_malformed", error_kind="protocol")


def finish(resp: HttpResponse, done: bool) -> None:
    """Return a fully read connection to the pool; close one that is not (the provider stops)."""
    if done:
        resp.release()
    else:
        resp.close()


def decode_object(data: bytes) -> dict[str, Any] | None:
    """A JSON object, or ``None`` if ``data`` is not one."""
    try:
        obj = msgspec.json.decode(data)
    except msgspec.DecodeError:
        return None
    return obj if isinstance(obj, dict) else None


async def _prepend(first: bytes, rest: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    try:
        yield first
        async for item in rest:
            yield item
    finally:
        aclose = getattr(rest, "aclose", None)
        if aclose is not None:
            await aclose()
