"""Route: public model name -> model group -> deployment, with failover inside the deadline.

The innermost handler. It checks that the model exists (404), that the key may use it (403) and
that it serves this operation (400); then picks a deployment with the group's balancing strategy
and, on a retryable outcome (connection error, timeout, 5xx, 429, open breaker), moves to the next
deployment in failover order. The sends follow the request's one retry plan
(:mod:`seawall.algorithms.plan`, shared with the admission policy's requeue after an upstream 429
and driven by the simulator too), and every retry is paid for from a retry budget shared by the
whole gateway (about 20% of requests), so an outage can never turn into a retry storm. A request
that is already a client retry (the SDKs' own ``x-stainless-retry-count``) gets no gateway retries
while the budget is tight. Retrying the same deployment again waits a full-jitter backoff; moving
to another one does not.

A stream is retried only before its first byte: once the first event reached the client, a
failure ends the stream with an error event (the server edge) and the ledger records the reason.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from seawall.algorithms.balancer import Candidate, failover_order, least_inflight, peak_ewma_p2c, weighted
from seawall.algorithms.ejection import EjectionGuard, Member
from seawall.algorithms.outcome import Outcome
from seawall.algorithms.plan import Backoff, GiveUp, PlanSettings, SendPlan
from seawall.algorithms.retry_budget import RetryBudget
from seawall.core.errors import GatewayError, InvalidRequest, ModelNotFound, Overloaded, PermissionDenied
from seawall.core.types import Operation, Request, Response
from seawall.env import Clock, Rng
from seawall.policies.deployment import NOT_SENT, DeploymentHandle, outcome_of

__all__ = ["ModelGroup", "RetrySettings", "Router", "no_deployment", "work_units"]

_SERVES = {
    Operation.CHAT: frozenset({Operation.CHAT, Operation.MESSAGES, Operation.RESPONSES, Operation.COMPLETIONS}),
    Operation.EMBEDDINGS: frozenset({Operation.EMBEDDINGS}),
    Operation.MODERATIONS: frozenset({Operation.MODERATIONS}),
}


@dataclass(frozen=True, slots=True)
class ModelGroup:
    name: str
    operation: Operation
    deployments: Sequence[DeploymentHandle]
    balancing: str = "latency"  # weighted | least_inflight | latency (peak-EWMA, power of two)


RetrySettings = PlanSettings  # max_attempts, backoff, max_requeues: one retry plan per request


def work_units(request: Request) -> float:
    """Estimated tokens: prompt estimate plus the completion budget (256 when unspecified)."""
    p = request.payload
    return float(p.estimated_prompt_tokens + (p.max_tokens or 256))


def no_deployment(group: ModelGroup, reason: str) -> Overloaded:
    """A round that could send nowhere: every deployment ejected (``all_ejected``) or none tried."""
    return Overloaded(f"No deployment of '{group.name}' is available.", reason=reason, retry_after_s=1.0)


def client_retry_count(request: Request) -> int:
    value = request.headers.get("x-stainless-retry-count", "0")
    return int(value) if value.isdigit() else 0


class Router:
    def __init__(self, groups: dict[str, ModelGroup], *, clock: Clock, rng: Rng, budget: RetryBudget,
                 ejection: EjectionGuard, retry: RetrySettings | None = None) -> None:
        self.groups = groups
        self.clock = clock
        self.rng = rng
        self.budget = budget
        self.ejection = ejection
        self.retry = retry or RetrySettings()

    def resolve(self, request: Request) -> ModelGroup:
        model = request.payload.model
        group = self.groups.get(model)
        if group is None:
            raise ModelNotFound(f"The model '{model}' does not exist.", param="model")
        if not request.principal.may_use(model):
            raise PermissionDenied(f"This key may not use the model '{model}'.", param="model")
        if request.operation not in _SERVES[group.operation]:
            raise InvalidRequest(
                f"The model '{model}' serves {group.operation.value}, not {request.operation.value}.",
                param="model", code="wrong_model_kind",
            )
        return group

    def plan(self, group: ModelGroup, now_s: float) -> list[DeploymentHandle]:
        """Deployments in the order to try: the balancer's pick, then failover order."""
        deployments = group.deployments
        if len(deployments) == 1:
            return list(deployments)  # nothing to choose (its breaker is asked in attempt())
        by_name = {d.name: d for d in deployments}
        opened = [d.is_open(now_s) for d in deployments]
        if True in opened:  # badness only matters for an open breaker (ejection.py)
            members = [Member(d.name, is_open, d.breaker.failure_rate(now_s) if is_open else 0.0)
                       for d, is_open in zip(deployments, opened, strict=True)]
            ejected = self.ejection.decide(members).ejected
            cands = [by_name[d.name].candidate(not is_open, now_s)
                     for d, is_open in zip(deployments, opened, strict=True) if d.name not in ejected]
        else:  # no breaker open: the guard would eject nothing
            cands = [by_name[d.name].candidate(True, now_s) for d in deployments]
        first = self._pick(group.balancing, cands, now_s)
        rest = failover_order(cands, first)
        if first is not None:
            rest.insert(0, first)
        return [by_name[c.name] for c in rest]

    def _pick(self, balancing: str, cands: list[Candidate], now_s: float) -> Candidate | None:
        if balancing == "weighted":
            return weighted(cands, self.rng.random())
        if balancing == "least_inflight":
            return least_inflight(cands, self.rng.random())
        return peak_ewma_p2c(cands, self.rng.random(), self.rng.random(), now_s)

    def plan_for(self, request: Request) -> SendPlan[DeploymentHandle]:
        """The request's one retry plan (algorithms/plan.py), made on its first round."""
        plan: SendPlan[DeploymentHandle] | None = request.ctx.plan
        if plan is None:
            plan = request.ctx.plan = SendPlan(self.retry, self.budget, self.rng.random, deadline_s=request.deadline,
                                               client_retries=client_retry_count(request),
                                               tried=request.ctx.deployments_tried)
        return plan

    def start_round(self, group: ModelGroup, plan: SendPlan[DeploymentHandle], now_s: float) -> bool:
        """Lay out a round; the first round also counts the request for the retry budget (a
        requeue's round is the same client request, already counted). False if no deployment is left."""
        if plan.sent == 0 and plan.requeues == 0:
            self.budget.on_request(now_s)
        order = self.plan(group, now_s)
        plan.begin_round(order)
        return bool(order)

    async def __call__(self, request: Request) -> Response:
        group = self.resolve(request)
        plan = self.plan_for(request)
        if not self.start_round(group, plan, self.clock.now()):
            raise no_deployment(group, "all_ejected")
        units = work_units(request)
        last: GatewayError | None = None
        while True:
            step = plan.next(self.clock.now())
            if step.__class__ is GiveUp:
                if step.reason == "retry_budget":
                    request.ctx.reason = "retry_budget"
                break
            if step.__class__ is Backoff:
                await self.clock.sleep(max(0.0, step.until_s - self.clock.now()))
            dep: DeploymentHandle = step.deployment  # type: ignore[union-attr]
            try:
                response = await dep.attempt(request, units)
            except GatewayError as err:
                last = err
                if err.reason in NOT_SENT:  # an open breaker, or no rate budget left (deployment.py)
                    plan.on_refused()
                    continue
                gave_up = plan.on_outcome(dep, outcome_of(err))
                request.ctx.attempts = plan.sent
                if gave_up is not None:
                    raise
                continue
            plan.on_outcome(dep, Outcome.SUCCESS)
            request.ctx.attempts = plan.sent
            return response
        raise last if last is not None else no_deployment(group, "no_deployment")
