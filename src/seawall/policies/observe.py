"""Observe: the outermost policy, so it sees every outcome, rejections included.

It records one metrics sample per request when the request is finished, which for a stream means
when the last event was sent (or the stream failed, or the client went away), not when the
handler returned.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Protocol

from seawall.core.compose import Handler
from seawall.core.errors import GatewayError
from seawall.core.types import Request, Response
from seawall.env import Clock

__all__ = ["ObservePolicy", "RequestMetrics"]

Record = Callable[[Request, Response | None, int, str], None]


class RequestMetrics(Protocol):
    """The sink this policy writes to (``seawall.edges.metrics.GatewayMetrics`` implements it)."""

    def observe_request(self, route: str, tier: str, status: int, reason: str, seconds: float) -> None: ...
    def observe_ttft(self, deployment: str, seconds: float) -> None: ...
    def observe_tokens(self, deployment: str, prompt: int, completion: int) -> None: ...
    def gauge_in_flight(self, route: str, delta: int) -> None: ...


class ObservePolicy:
    def __init__(self, metrics: RequestMetrics, *, clock: Clock, on_finish: Record | None = None) -> None:
        self.metrics = metrics
        self.clock = clock
        self.on_finish = on_finish  # e.g. the usage ledger

    def _finish(self, request: Request, response: Response | None, status: int, reason: str) -> None:
        principal = request.ctx.principal
        tier = principal.tier if principal is not None else "unauthenticated"
        route = request.operation.value
        self.metrics.observe_request(route, tier, status, reason, self.clock.now() - request.received_at)
        self.metrics.gauge_in_flight(route, -1)
        if response is not None and response.usage is not None and response.deployment is not None:
            self.metrics.observe_tokens(response.deployment, response.usage.prompt_tokens,
                                        response.usage.completion_tokens)
        if self.on_finish is not None:
            self.on_finish(request, response, status, reason)

    async def __call__(self, request: Request, next_handler: Handler) -> Response:
        self.metrics.gauge_in_flight(request.operation.value, 1)
        try:
            response = await next_handler(request)
        except GatewayError as exc:
            request.ctx.reason = exc.reason
            self._finish(request, None, exc.status, exc.reason)
            raise
        except asyncio.CancelledError:
            self._finish(request, None, 499, "client_disconnect")
            raise
        except Exception:
            self._finish(request, None, 500, "internal_error")
            raise
        if response.stream is None:
            self._finish(request, response, response.status, "ok")
            return response
        request.ctx.ttft_s = self.clock.now() - request.received_at
        if response.deployment is not None:
            self.metrics.observe_ttft(response.deployment, request.ctx.ttft_s)
        response.stream = self._watch(request, response, response.stream)
        return response

    async def _watch(self, request: Request, response: Response, inner: AsyncIterator[bytes]
                     ) -> AsyncIterator[bytes]:
        status, reason = 200, "ok"
        try:
            async for item in inner:
                yield item
        except GatewayError as exc:
            status, reason = exc.status, exc.reason
            request.ctx.reason = reason
            raise
        except (asyncio.CancelledError, GeneratorExit):
            status, reason = 499, "client_disconnect"
            raise
        except Exception:
            status, reason = 500, "internal_error"
            raise
        finally:
            aclose = getattr(inner, "aclose", None)
            if aclose is not None:
                await aclose()
            self._finish(request, response, status, reason)
