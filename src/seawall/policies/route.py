"""Route: public model name -> model group -> deployment, with failover inside the deadline.

The innermost handler. It checks that the model exists (404), that the key may use it (403) and
that it serves this operation (400); then picks a deployment with the group's balancing strategy
and, on a retryable outcome (connection error, timeout, 5xx, 429, open breaker), moves to the next
deployment in failover order. This is the only layer that retries, and every retry is paid for
from a retry budget shared by the whole gateway (about 20% of requests), so an outage can never
turn into a retry storm. A request that is already a client retry (the SDKs' own
``x-stainless-retry-count``) gets no gateway retries while the budget is tight. Retrying the same
deployment again waits a full-jitter backoff; moving to another one does not.

A stream is retried only before its first byte: once the first event reached the client, a
failure ends the stream with an error event (the server edge) and the ledger records the reason.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from seawall.algorithms.backoff import full_jitter
from seawall.algorithms.balancer import Candidate, failover_order, least_inflight, peak_ewma_p2c, weighted
from seawall.algorithms.ejection import EjectionGuard, Member
from seawall.algorithms.outcome import Outcome
from seawall.algorithms.retry_budget import RetryBudget
from seawall.core.errors import GatewayError, InvalidRequest, ModelNotFound, Overloaded, PermissionDenied
from seawall.core.types import Operation, Request, Response
from seawall.env import Clock, Rng
from seawall.policies.deployment import NOT_SENT, DeploymentHandle, outcome_of

__all__ = ["ModelGroup", "RetrySettings", "Router"]

_SERVES = {
    Operation.CHAT: frozenset({Operation.CHAT, Operation.MESSAGES}),
    Operation.EMBEDDINGS: frozenset({Operation.EMBEDDINGS}),
}


@dataclass(frozen=True, slots=True)
class ModelGroup:
    name: str
    operation: Operation
    deployments: Sequence[DeploymentHandle]
    balancing: str = "latency"  # weighted | least_inflight | latency (peak-EWMA, power of two)


@dataclass(frozen=True, slots=True)
class RetrySettings:
    max_attempts: int = 3
    backoff_base_s: float = 0.05
    backoff_cap_s: float = 2.0


def work_units(request: Request) -> float:
    """Estimated tokens: prompt estimate plus the completion budget (256 when unspecified)."""
    p = request.payload
    return float(p.estimated_prompt_tokens + (p.max_tokens or 256))


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

    async def __call__(self, request: Request) -> Response:
        group = self.resolve(request)
        now = self.clock.now()
        self.budget.on_request(now)
        order = self.plan(group, now)
        if not order:
            raise Overloaded(f"No deployment of '{group.name}' is available.", reason="all_ejected",
                             retry_after_s=1.0)
        units = work_units(request)
        client_retries = client_retry_count(request)
        last: GatewayError | None = None
        overloaded: set[str] = set()
        sent = 0
        # Sends in earlier rounds (the admission policy requeues after an upstream 429): one plan
        # per client request. max_attempts bounds them all, plus one send per requeue (each paid
        # from the same retry budget), not max_attempts per round.
        prior = request.ctx.attempts
        cap = self.retry.max_attempts + request.ctx.requeues
        # Each deployment in failover order; with fewer deployments than attempts, round again
        # (after a backoff), except to one that said 429: the admission layer owns that wait.
        for dep in (order * self.retry.max_attempts)[: max(len(order), self.retry.max_attempts)]:
            if prior + sent >= cap:
                break
            if dep.name in overloaded:
                continue
            if sent > 0:
                if self.clock.now() >= request.deadline:
                    break
                if not self.budget.try_retry(self.clock.now(), client_retries):
                    request.ctx.reason = "retry_budget"
                    break
                if dep.name in request.ctx.deployments_tried:
                    wait_s = full_jitter(sent - 1, self.retry.backoff_base_s, self.retry.backoff_cap_s,
                                         self.rng.random())
                    if self.clock.now() + wait_s >= request.deadline:
                        break
                    await self.clock.sleep(wait_s)
            request.ctx.deployments_tried.append(dep.name)
            try:
                response = await dep.attempt(request, units)
            except GatewayError as err:
                last = err
                if err.reason in NOT_SENT:  # an open breaker, or no rate budget left (deployment.py)
                    request.ctx.deployments_tried.pop()
                    continue  # nothing was sent; costs no attempt and no budget
                sent += 1
                request.ctx.attempts = prior + sent
                outcome = outcome_of(err)
                if not outcome.retryable:
                    raise
                if outcome is Outcome.OVERLOADED:
                    overloaded.add(dep.name)
                continue
            request.ctx.attempts = prior + sent + 1
            return response
        if last is None:
            raise Overloaded(f"No deployment of '{group.name}' is available.", reason="no_deployment",
                             retry_after_s=1.0)
        raise last
