"""Admission: who gets the capacity when there is not enough for everyone.

Position: after auth (the tier is known) and before route (nothing is sent yet). Per request:

1. **Criticality.** The key's tier decides the entitlement; OpenAI's ``service_tier`` may lower it
   (``flex`` -> sheddable, ``default``/``auto`` -> at most critical), never raise it.
2. **Cheap rejects first, before the body is parsed.** If the event loop is lagging (the gateway's
   own CPU is the bottleneck) the least critical traffic is refused at once, with thresholds that
   rise with criticality; and if every gate is already refusing this criticality for capacity, the
   request is refused without parsing its body.
3. **The gate** of the request's model group: start, wait (bounded), or a typed 503.
4. On completion, the gate gets its units back and one sample for the adaptive limit: seconds per
   output token of the whole request (see ``_sample``), or a *drop* when the upstream said 429 or
   timed out. Upstream 429s therefore shrink the limit instead of reaching clients as a retry storm.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

from seawall.algorithms.outcome import Outcome
from seawall.algorithms.plan import SendPlan
from seawall.core.compose import Handler
from seawall.core.errors import GatewayError, Overloaded
from seawall.core.streams import after_stream
from seawall.core.types import Criticality, Request, Response
from seawall.env import Clock
from seawall.policies.deployment import outcome_of
from seawall.policies.gate import AdmissionGate, Ticket
from seawall.policies.route import Router, work_units

__all__ = ["AdmissionPolicy", "effective_criticality", "latency_sample"]

_CRITICAL = int(Criticality.CRITICAL)  # enum member lookups cost ~0.1 µs each on Python 3.11
SAMPLE_MAX_LOOP_LAG_S = 0.01  # above this event-loop lag, latency samples say nothing about upstreams


def latency_sample(started_s: float, now_s: float, completion_tokens: int, loop_lag_s: float) -> float | None:
    """The limit's latency sample: seconds per output token of a finished request.

    Raw latency grows with the length of the answer, which says nothing about congestion; time per
    output token (TTFT spread over the answer, plus decode time per token) rises when the upstream
    queues or batches more, whatever the mix of lengths. None while the gateway's own event loop
    lags (``loop_lag_s`` above ``SAMPLE_MAX_LOOP_LAG_S``): then latency measures our CPU, not the
    upstream (loop-lag shedding handles that), and must not shrink the upstream's limit.
    """
    if loop_lag_s > SAMPLE_MAX_LOOP_LAG_S:
        return None
    return (now_s - started_s) / (1 + completion_tokens)


def effective_criticality(entitled: Criticality, service_tier: str | None) -> Criticality:
    if service_tier == "flex":
        return min(entitled, Criticality.SHEDDABLE)
    if service_tier in (None, "priority"):
        return entitled
    return min(entitled, Criticality.CRITICAL)  # auto, default, scale


class AdmissionPolicy:
    def __init__(
        self,
        gates: Mapping[str, AdmissionGate],
        router: Router,
        *,
        clock: Clock,
        loop_lag_s: Callable[[], float] | None = None,
        lag_shed_s: Mapping[Criticality, float] | None = None,
        on_shed: Callable[[str, str, str], None] | None = None,
        on_admit: Callable[[str, str, float], None] | None = None,
    ) -> None:
        self.gates = gates
        self.router = router
        self.clock = clock
        self.loop_lag_s = loop_lag_s
        self.lag_shed_s = dict(lag_shed_s or {})
        self.on_shed = on_shed  # (group, criticality, reason) for metrics
        self.on_admit = on_admit  # (group, criticality, queue delay in seconds)

    def _shed(self, group: str, crit: Criticality, err: GatewayError) -> GatewayError:
        if self.on_shed is not None:
            self.on_shed(group, crit.label, err.reason)
        return err

    def _early(self, crit: Criticality) -> None:
        """Refuse before parsing when the answer is already known from the tier alone."""
        if self.loop_lag_s is not None:
            threshold = self.lag_shed_s.get(crit)
            lag = self.loop_lag_s()
            if threshold is not None and lag > threshold:
                raise self._shed("*", crit, Overloaded(
                    "The gateway is overloaded; try again shortly.", reason="gateway_overload",
                    retry_after_s=max(1.0, 10 * lag)))
        if crit < _CRITICAL and self.gates:
            now = self.clock.now()
            for gate in self.gates.values():  # every gate refusing this criticality (saturated() is pure)
                if not len(gate.queue) or not gate.saturated(crit, now):
                    return
            gate = next(iter(self.gates.values()))
            raise self._shed("*", crit, Overloaded(
                "The service is at capacity; try again shortly.", reason="overload",
                retry_after_s=gate.retry_after_s(crit, 0.0)))

    async def __call__(self, request: Request, next_handler: Handler) -> Response:
        principal = request.principal
        self._early(principal.criticality)
        crit = effective_criticality(principal.criticality, request.payload.service_tier)
        request.ctx.criticality = crit
        group = self.router.resolve(request)
        gate = self.gates.get(group.name)
        if gate is None:
            return await next_handler(request)
        units = work_units(request)
        requeued = False
        while True:
            try:
                ticket = await gate.acquire(crit, units, request.deadline, requeued)
            except GatewayError as err:
                raise self._shed(group.name, crit, err) from None
            started = self.clock.now()
            try:
                response = await next_handler(request)
                break
            except GatewayError as exc:
                floor_s = self.on_round_failed(gate, ticket, request.ctx.plan, outcome_of(exc), exc.error_kind)
                if floor_s is not None:
                    if floor_s > 0.0:
                        exc.retry_after_s = max(exc.retry_after_s or 0.0, floor_s)
                    raise
                requeued = True
            except BaseException as exc:
                gate.release(ticket, rtt_s=None, dropped=getattr(exc, "error_kind", None) == "timeout")
                raise
        response.headers.append(("x-seawall-criticality", crit.label))
        if self.on_admit is not None:
            self.on_admit(group.name, crit.label, ticket.queued_s)
        if response.stream is None:
            # The body keeps the upstream's service_tier, as a stream's chunks do (the two once
            # disagreed); what seawall made of the request is in x-seawall-criticality.
            gate.release(ticket, rtt_s=self._sample(started, response), dropped=False)
            return response
        response.stream = self._release_after(response.stream, gate, ticket, started, response)
        return response

    def on_round_failed(self, gate: AdmissionGate, ticket: Ticket, plan: SendPlan[Any] | None, outcome: Outcome,
                        error_kind: str | None) -> float | None:
        """The router gave up on a round: the ticket goes back (a *drop* for the limit when the
        upstream said 429 or timed out), and the request's retry plan decides whether it waits in
        the queue for real capacity and goes round again (after an upstream 429: the limit just
        shrank, so wait for a release instead of bouncing the 429 back).

        None: requeue. Otherwise the failure stands, and this is the least ``retry-after`` (s) to
        tell the client: the gate's drain estimate after an upstream 429, else 0.
        """
        overloaded = outcome is Outcome.OVERLOADED
        gate.release(ticket, rtt_s=None, dropped=overloaded or error_kind == "timeout")
        if plan is not None and plan.requeue(self.clock.now(), outcome):
            return None
        return gate.retry_after_s(ticket.criticality, ticket.units) if overloaded else 0.0

    def _sample(self, started_s: float, response: Response) -> float | None:
        tokens = response.usage.completion_tokens if response.usage is not None else 0
        return latency_sample(started_s, self.clock.now(), tokens,
                              self.loop_lag_s() if self.loop_lag_s is not None else 0.0)

    def _release_after(self, inner: AsyncIterator[bytes], gate: AdmissionGate, ticket: Ticket,
                       started_s: float, response: Response) -> AsyncIterator[bytes]:
        def release(finished: bool) -> None:
            gate.release(ticket, rtt_s=self._sample(started_s, response) if finished else None, dropped=False)

        return after_stream(inner, release)
