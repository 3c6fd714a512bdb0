"""One deployment as the router sees it: breaker -> attempt deadline -> in-flight work -> upstream.

Each deployment owns its long-lived decision state (a circuit breaker, a peak-EWMA latency
estimate, the work in flight, the headroom its upstream last reported). ``attempt()`` sends one
request there and feeds back what happened, through the one response classifier
(:func:`seawall.algorithms.outcome.classify`): upstream 429s and client errors never count against
the breaker. A stream counts as a success only when it ends cleanly; a break mid-stream is a
failure of the deployment, reported when it happens.

A deployment whose upstream states a rate budget (``x-ratelimit-*``, ``anthropic-ratelimit-*``) is
paced (:class:`~seawall.algorithms.pacing.Pacer`): while the budget has no room for a request, the
balancer prefers other deployments, and ``attempt()`` raises :class:`Paced` without sending, as an
open breaker does; the router then fails over, or the admission gate holds the work.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

from seawall.algorithms.balancer import Candidate, PeakEwma
from seawall.algorithms.breaker import BreakerState, CircuitBreaker, Permit
from seawall.algorithms.outcome import Outcome, classify
from seawall.algorithms.pacing import Pacer, RateLimitReport
from seawall.core.errors import GatewayError, Overloaded, UpstreamTimeout
from seawall.core.types import Request, Response
from seawall.env import Clock

__all__ = ["NOT_SENT", "BreakerOpen", "DeploymentHandle", "Paced", "Send", "outcome_of", "ttft_timeout"]

_OPEN = BreakerState.OPEN  # enum member lookups cost ~0.1 µs each on Python 3.11
MIN_COOLDOWN_S, MAX_COOLDOWN_S = 1.0, 30.0  # bounds on the skip after an upstream 429/529

Send = Callable[[Request], Awaitable[Response]]


class BreakerOpen(Overloaded):
    """Not an attempt at all: the deployment's breaker said no, so nothing was sent."""

    code = "deployment_unavailable"


class Paced(Overloaded):
    """Not an attempt either: the upstream's stated budget has no room for this request until
    ``retry_after_s``. Classified as the 429 it avoided (``OVERLOADED``): the admission limit
    hears "too much" without a request being spent on it."""

    code = "deployment_paced"


NOT_SENT = frozenset({"breaker_open", "paced"})  # reasons of attempts that sent nothing


def ttft_timeout(name: str, timeout_s: float) -> UpstreamTimeout:
    """No first token within the deployment's ``ttft_timeout_s``: a failure of the deployment."""
    return UpstreamTimeout(f"Deployment '{name}' sent no first token within {timeout_s} s.",
                           reason="ttft_timeout", error_kind="timeout")


def outcome_of(err: BaseException) -> Outcome:
    if isinstance(err, asyncio.CancelledError):
        return Outcome.CANCELLED
    if isinstance(err, GatewayError):
        if err.upstream_status is None and err.error_kind is None:
            return Outcome.FAILURE if err.status >= 500 else Outcome.CLIENT_ERROR
        return classify(err.upstream_status, err.error_kind)
    return Outcome.FAILURE


@dataclass
class DeploymentHandle:
    name: str
    send: Send
    breaker: CircuitBreaker
    clock: Clock
    weight: float = 1.0
    priority: int = 0
    ttft_timeout_s: float | None = None
    ewma: PeakEwma = field(default_factory=PeakEwma)
    inflight_units: float = 0.0
    headroom: float = 1.0
    cooldown_until_s: float = 0.0
    pacer: Pacer | None = field(default_factory=Pacer)  # None: rate-limit headers pace nothing
    # Told when the upstream states a rate budget: the group limit's on_upstream_budget (config/stack.py).
    on_budget: Callable[[float], None] | None = None
    _candidate: Candidate | None = field(default=None, init=False, repr=False, compare=False)

    def candidate(self, healthy: bool, now_s: float) -> Candidate:
        # After a 429/529 the deployment counts as unhealthy (so traffic moves to the next priority
        # tier) until its retry hint has passed; then its last headroom reading (0 after a 429) is
        # stale, and it is treated as unknown, so it is tried again.
        cooldown_until_s = self.cooldown_until_s
        cooling = now_s < cooldown_until_s
        if cooldown_until_s and not cooling:
            self.headroom, self.cooldown_until_s = 1.0, 0.0
        healthy = healthy and not cooling and not (self.pacer is not None and self.pacer.exhausted(now_s))
        # The last one again when nothing it holds has changed (a frozen dataclass costs ~1 µs to build).
        last = self._candidate
        if (last is not None and last.inflight_units == self.inflight_units and last.healthy is healthy
                and last.headroom == self.headroom and last.weight == self.weight
                and last.priority == self.priority and last.ewma is self.ewma and last.name == self.name):
            return last
        self._candidate = last = Candidate(self.name, self.weight, self.priority, self.inflight_units, self.ewma,
                                           healthy, self.headroom)
        return last

    def is_open(self, now_s: float) -> bool:
        return self.breaker.state(now_s) is _OPEN

    def paced_for_s(self, now_s: float, units: float) -> float:
        """Seconds until the upstream's budget has room for ``units`` (0: send now)."""
        return 0.0 if self.pacer is None else self.pacer.ready_at(now_s, units) - now_s

    def observe_rate_limits(self, now_s: float, report: RateLimitReport | None, *, refused: bool = False,
                            units: float = 0.0) -> None:
        """What an answer's rate-limit headers said (``refused``: it was a 429 for ``units``)."""
        if report is None or self.pacer is None:
            return
        self.pacer.observe(now_s, report, refused=refused, units=units)
        if self.on_budget is not None and self.pacer.states_budget(now_s):
            self.on_budget(now_s)

    # -- the attempt's events: the gateway's attempt() and the simulator both drive these ------------
    def begin(self, now_s: float, units: float) -> Permit | None:
        """May one attempt start here? None when the stated rate budget has no room for it or the
        breaker says no (nothing is sent: :meth:`refusal` says which); else its permit, and
        ``units`` count as in flight here (and against the budget) until :meth:`end`."""
        if self.pacer is not None and self.pacer.ready_at(now_s, units) > now_s:
            return None
        permit = self.breaker.allow(now_s)
        if permit is not None:
            if self.pacer is not None:
                self.pacer.on_send(now_s, units)
            self.inflight_units += units
        return permit

    def refusal(self, now_s: float, units: float) -> Paced | BreakerOpen:
        """What :meth:`begin`'s None means to the caller; nothing was sent either way."""
        wait_s = self.paced_for_s(now_s, units)
        if wait_s > 0.0:
            return Paced(f"Deployment '{self.name}' has no rate budget left for now.", reason="paced",
                         retry_after_s=wait_s, upstream_status=429)
        return BreakerOpen(f"Deployment '{self.name}' is unavailable (circuit open).",
                           reason="breaker_open", retry_after_s=self.breaker.retry_after_s(now_s))

    def first_token_timeout_s(self, stream: bool) -> float | None:
        """The timer to set for the response's head: ``ttft_timeout_s`` for a stream, if any."""
        return self.ttft_timeout_s if stream else None

    def on_head(self, now_s: float, took_s: float, headroom: float | None,
                rate_limits: RateLimitReport | None = None) -> None:
        """The response head came after ``took_s``: the latency estimate, the reported headroom and
        the rate budget its headers state."""
        self.ewma.observe(now_s, took_s)
        if headroom is not None:
            self.headroom = headroom
        if rate_limits is not None:
            self.observe_rate_limits(now_s, rate_limits)

    def end(self, now_s: float, permit: Permit, units: float, outcome: Outcome, *,
            headroom: float | None = None, retry_after_s: float | None = None,
            rate_limits: RateLimitReport | None = None, refused: bool = False) -> None:
        """The attempt is over: its units leave, the breaker hears the outcome, after an upstream
        429/529 the deployment cools down for the retry hint (bounded), and a failure's rate-limit
        headers reach the pacer (``refused``: the answer was a 429)."""
        if outcome is Outcome.OVERLOADED:
            hint_s = retry_after_s or 0.0
            self.cooldown_until_s = now_s + min(max(hint_s, MIN_COOLDOWN_S), MAX_COOLDOWN_S)
        if rate_limits is not None:
            self.observe_rate_limits(now_s, rate_limits, refused=refused, units=units)
        left = self.inflight_units - units
        self.inflight_units = left if left > 0.0 else 0.0
        self.breaker.on_result(now_s, permit, outcome)
        if headroom is not None:
            self.headroom = headroom

    # -- on asyncio -----------------------------------------------------------------------------
    async def attempt(self, request: Request, units: float) -> Response:
        """Send ``request`` here once; raise :class:`Paced` or :class:`BreakerOpen` without sending
        if not allowed."""
        now = self.clock.now()
        permit = self.begin(now, units)
        if permit is None:
            raise self.refusal(now, units)
        started = now
        try:
            timeout_s = self.first_token_timeout_s(request.payload.stream)
            if timeout_s is not None:
                response = await self._within(timeout_s, request)
            else:
                response = await self.send(request)
        except BaseException as exc:
            self.end(self.clock.now(), permit, units, outcome_of(exc), headroom=getattr(exc, "headroom", None),
                     retry_after_s=getattr(exc, "retry_after_s", None), rate_limits=getattr(exc, "rate_limits", None),
                     refused=getattr(exc, "upstream_status", None) == 429)
            raise
        now = self.clock.now()
        self.on_head(now, now - started, response.headroom, response.rate_limits)
        if response.stream is None:
            self.end(now, permit, units, Outcome.SUCCESS)
        else:
            response.stream = self._watch(response.stream, permit, units)
        return response

    async def _within(self, timeout_s: float, request: Request) -> Response:
        """``send`` with the first-token timer on the injected clock (not the loop's), so the
        deployment runs the same on a fake clock in tests."""
        sending = asyncio.ensure_future(self.send(request))
        timer = asyncio.ensure_future(self.clock.sleep(timeout_s))
        try:
            await asyncio.wait((sending, timer), return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            sending.cancel()
            raise
        finally:
            timer.cancel()
        if not sending.done():
            sending.cancel()
            try:
                await sending
            except BaseException:
                pass
            raise ttft_timeout(self.name, timeout_s)
        return sending.result()

    async def _watch(self, inner: AsyncIterator[bytes], permit: Permit, units: float) -> AsyncIterator[bytes]:
        outcome = Outcome.FAILURE
        try:
            async for item in inner:
                yield item
            outcome = Outcome.SUCCESS
        except (asyncio.CancelledError, GeneratorExit):
            outcome = Outcome.CANCELLED
            raise
        except BaseException as exc:
            outcome = outcome_of(exc)
            raise
        finally:
            aclose = getattr(inner, "aclose", None)
            if aclose is not None:
                await aclose()
            self.end(self.clock.now(), permit, units, outcome)
