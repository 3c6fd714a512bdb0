"""Kinds to factories: what a name in the config builds, and the decision objects built from it.

One place for each choice the config names, so that a new kind is one new file and one line here:

- :data:`LIMITS`: ``admission.algorithm`` -> the adaptive limit (``algorithms/limit.py``);
- :data:`PROVIDERS`: ``models[].deployments[].provider`` -> the upstream adapter (``edges/upstreams``);
- the upstream behaviours of the mock and the simulator are registered beside their models
  (:data:`seawall.mock.model.BEHAVIOURS`).

And the builders of the decision objects, used by the live gateway (``config/stack.py``) and by
each simulated replica (``surge/replica.py``) alike, so both run the same objects with the same
settings: :func:`make_breaker`, :func:`make_handle`, :func:`connect_budgets`, :func:`make_groups`, :func:`make_router`,
:func:`make_gates` and :func:`make_admission`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from seawall.algorithms.breaker import CircuitBreaker
from seawall.algorithms.ejection import EjectionGuard
from seawall.algorithms.limit import AimdLimit, Gradient2Limit, LimitAlgorithm, VegasLimit
from seawall.algorithms.pacing import Pacer
from seawall.algorithms.partition import PartitionedLimiter
from seawall.algorithms.retry_budget import RetryBudget
from seawall.config.schema import AdmissionSettings, BreakerSettings, Config, Deployment, ResilienceSettings
from seawall.core.types import Criticality, Operation
from seawall.env import Clock, Rng
from seawall.policies.admission import AdmissionPolicy
from seawall.policies.deployment import DeploymentHandle, Send
from seawall.policies.gate import AdmissionGate, GateSettings
from seawall.policies.route import ModelGroup, RetrySettings, Router
from seawall.safety.settings import GuardStage2Settings

__all__ = [
    "LIMITS",
    "PROVIDERS",
    "connect_budgets",
    "gate_settings",
    "make_admission",
    "make_breaker",
    "make_gates",
    "make_groups",
    "make_guard_gate",
    "make_handle",
    "make_limit",
    "make_router",
]

# -- kinds --------------------------------------------------------------------------------------

LIMITS: dict[str, Callable[[AdmissionSettings], LimitAlgorithm]] = {
    "gradient2": lambda a: Gradient2Limit(
        initial_limit=a.initial_limit_units, min_limit=a.min_limit_units, max_limit=a.max_limit_units,
        tolerance=a.latency_tolerance, min_queue_requests=a.min_queue_requests,
        probe_interval=a.probe_interval_windows),
    "vegas": lambda a: VegasLimit(
        initial_limit=a.initial_limit_units, min_limit=a.min_limit_units, max_limit=a.max_limit_units,
        probe_interval=a.probe_interval_windows),
    "aimd": lambda a: AimdLimit(
        initial_limit=a.initial_limit_units, min_limit=a.min_limit_units, max_limit=a.max_limit_units),
}

#: An upstream adapter for one deployment: ``(name, deployment config, clock, start_mock) -> Upstream``.
#: ``start_mock`` starts an in-process mock upstream from its settings and returns its base URL.
ProviderFactory = Callable[[str, Deployment, Clock, Callable[[Mapping[str, Any]], Awaitable[str]]], Awaitable[Any]]


async def _http_provider(kind: str, name: str, dep: Deployment, clock: Clock,
                         start_mock: Callable[[Mapping[str, Any]], Awaitable[str]]) -> Any:
    import os

    from seawall.edges.upstreams import UpstreamSettings, make_upstream

    base_url = dep.base_url if kind != "mock" else await start_mock(dep.mock or {})
    assert base_url is not None  # the schema requires it for every provider but the mock
    api_key = os.environ.get(dep.api_key_env) if dep.api_key_env else None
    return make_upstream(kind, UpstreamSettings(
        name=name, base_url=base_url, model=dep.model, api_key=api_key, connect_s=dep.timeouts.connect_s,
        read_s=dep.timeouts.read_s, total_s=dep.timeouts.total_s, max_connections=dep.max_connections,
    ), clock=clock)


def _provider(kind: str) -> ProviderFactory:
    async def build(name: str, dep: Deployment, clock: Clock,
                    start_mock: Callable[[Mapping[str, Any]], Awaitable[str]]) -> Any:
        return await _http_provider(kind, name, dep, clock, start_mock)

    return build


PROVIDERS: dict[str, ProviderFactory] = {
    "openai": _provider("openai"),  # any OpenAI-compatible server: OpenAI, vLLM, TGI, Ollama, ...
    "anthropic": _provider("anthropic"),
    "mock": _provider("mock"),  # the built-in simulated upstream, started in-process
}


# -- the decision objects, built alike for the gateway and the simulator --------------------------

def make_limit(a: AdmissionSettings) -> LimitAlgorithm:
    """The adaptive limit ``admission.algorithm`` names (the schema checks the name)."""
    return LIMITS[a.algorithm](a)


def gate_settings(a: AdmissionSettings) -> GateSettings:
    """The admission gate's settings from the config."""
    return GateSettings(queue_max_items=a.queue_max_items, queue_max_units_ratio=a.queue_max_units_ratio,
                        max_queue_wait_s=a.max_queue_wait_s,
                        critical_max_queue_wait_s=a.critical_max_queue_wait_s, codel_target_s=a.codel_target_s,
                        codel_interval_s=a.codel_interval_s, protect_window_s=a.protect_window_s)


def make_breaker(b: BreakerSettings) -> CircuitBreaker:
    return CircuitBreaker(
        failure_rate_threshold=b.failure_rate_threshold, min_requests=b.min_requests,
        consecutive_failures_to_open=b.consecutive_failures, window_s=b.window_s, open_s=b.open_s,
        max_open_s=b.max_open_s, half_open_max_probes=b.half_open_max_probes,
        probe_successes_to_close=b.probe_successes_to_close,
    )


def make_handle(name: str, send: Send, dep: Deployment, r: ResilienceSettings, clock: Clock) -> DeploymentHandle:
    """One deployment as the router sees it: its breaker, weight, priority, first-token timeout and,
    unless ``resilience.pace_rate_limits`` is off, the pacer of the rate budget its upstream states."""
    return DeploymentHandle(name, send, make_breaker(r.breaker), clock, weight=dep.weight, priority=dep.priority,
                            ttft_timeout_s=dep.ttft_timeout_s, pacer=Pacer() if r.pace_rate_limits else None)


#: What a model group of each ``kind`` serves.
OPERATIONS = {"chat": Operation.CHAT, "embeddings": Operation.EMBEDDINGS, "moderation": Operation.MODERATIONS}


def make_groups(config: Config, handles: Mapping[str, Sequence[DeploymentHandle]]) -> dict[str, ModelGroup]:
    """The model groups of ``config``, from each model's deployment handles (in config order)."""
    return {model.name: ModelGroup(model.name, OPERATIONS[model.kind], tuple(handles[model.name]), model.balancing)
            for model in config.models}


def make_router(groups: dict[str, ModelGroup], r: ResilienceSettings, *, clock: Clock, rng: Rng) -> Router:
    return Router(
        groups, clock=clock, rng=rng,
        budget=RetryBudget(r.retry_budget_ratio, r.retry_min_per_s, r.retry_window_s),
        ejection=EjectionGuard(r.max_ejected_fraction),
        retry=RetrySettings(r.max_attempts, r.backoff_base_s, r.backoff_cap_s),
    )


def make_gates(a: AdmissionSettings, groups: Sequence[str], clock: Clock) -> dict[str, AdmissionGate]:
    """One admission gate per model group, each with its own adaptive limit."""
    shares = {Criticality.parse(k): v for k, v in a.shares.items()}
    settings = gate_settings(a)
    return {name: AdmissionGate(name, clock=clock, limit=make_limit(a), limiter=PartitionedLimiter(shares),
                                settings=settings)
            for name in groups}


def connect_budgets(gates: Mapping[str, AdmissionGate], groups: Mapping[str, ModelGroup]) -> None:
    """A deployment that states a rate budget tells its group's limit so (the limit is then
    loss-based: ``LimitAlgorithm.on_upstream_budget``)."""
    for name, gate in gates.items():
        for handle in groups[name].deployments:
            handle.on_budget = gate.limit.on_upstream_budget


def make_admission(a: AdmissionSettings, gates: Mapping[str, AdmissionGate], router: Router, *, clock: Clock,
                   loop_lag_s: Callable[[], float] | None,
                   on_shed: Callable[[str, str, str], None] | None = None,
                   on_admit: Callable[[str, str, float], None] | None = None) -> AdmissionPolicy:
    return AdmissionPolicy(
        gates, router, clock=clock, loop_lag_s=loop_lag_s,
        lag_shed_s={Criticality.parse(k): v for k, v in a.loop_lag_shed_s.items()},
        on_shed=on_shed, on_admit=on_admit,
    )


def make_guard_gate(s: GuardStage2Settings, clock: Clock) -> AdmissionGate:
    """Stage 2's capacity (``guard.stage2``): an AIMD limit in calls, reserved shares per criticality,
    a short bounded queue; the same gate object admission uses, so the simulator can run it too."""
    limit = AimdLimit(initial_limit=s.limit_requests, min_limit=min(s.min_limit_requests, s.limit_requests),
                      max_limit=s.limit_requests)
    shares = {Criticality.parse(k): v for k, v in s.shares.items()}
    return AdmissionGate(f"guard:{s.model}", clock=clock, limit=limit, limiter=PartitionedLimiter(shares),
                         settings=GateSettings(queue_max_items=256, max_queue_wait_s=s.max_queue_wait_s,
                                               critical_max_queue_wait_s=s.max_queue_wait_s))
