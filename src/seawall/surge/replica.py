"""One simulated gateway replica: the live gateway's own decision objects, on a virtual clock.

Everything that decides is the production object, built from the gateway's ``Config`` the way
``config/stack.py`` builds it: the admission gate per model group (``policies/gate.py``, with its
adaptive limit, partitioned limiter, queue, CoDel and drain rate), the admission policy's early
shedding (``AdmissionPolicy._early``), the router's deployment plan (``Router.plan``: ejection,
balancer, failover order) and retry budget, and each deployment's breaker, peak-EWMA and in-flight
accounting (``DeploymentHandle``). Auth's failure throttle is the same ``KeyedGcra``.

What the simulator re-expresses is only the asynchronous control flow between those decisions —
waiting in the queue, the router's attempt loop, the admission policy's requeue on an upstream 429
— because it cannot run on asyncio at ten million requests. The gate is driven through its own
event methods (``AdmissionGate.offer``, ``expire``, ``release``), exactly as its asyncio driver
``acquire`` drives them, with a future-like :class:`Waiter` in the queue.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from seawall.algorithms.breaker import CircuitBreaker
from seawall.algorithms.ejection import EjectionGuard
from seawall.algorithms.gcra import KeyedGcra
from seawall.algorithms.partition import PartitionedLimiter
from seawall.algorithms.retry_budget import RetryBudget
from seawall.config.schema import Config
from seawall.config.stack import OPERATIONS, gate_settings, make_limit
from seawall.core.types import Criticality, Request, Response
from seawall.policies.admission import AdmissionPolicy
from seawall.policies.deployment import DeploymentHandle
from seawall.policies.gate import AdmissionGate, Ticket
from seawall.policies.route import ModelGroup, RetrySettings, Router

__all__ = ["AdmissionGate", "Replica", "SimClock", "SimRng", "Waiter", "build_replica"]


class SimClock:
    """The virtual clock: the engine moves ``t``; nothing here ever sleeps."""

    __slots__ = ("t",)

    def __init__(self, t: float = 0.0) -> None:
        self.t = t

    def now(self) -> float:
        return self.t

    def wall(self) -> float:
        return 1_700_000_000.0 + self.t

    async def sleep(self, seconds: float) -> None:
        raise RuntimeError("the simulator's clock never sleeps; schedule an event instead")


class SimRng:
    __slots__ = ("random",)

    def __init__(self, random: Callable[[], float]) -> None:
        self.random = random

    def token_hex(self, nbytes: int) -> str:
        return format(int(self.random() * (1 << 62)), "x").rjust(nbytes * 2, "0")[: nbytes * 2]


class Waiter:
    """What a request waiting in a :class:`AdmissionGate` queue is: the part of ``asyncio.Future`` the
    gate uses (``done``, ``set_result``, ``set_exception``, ``cancel``). A result or an error is
    handed to ``notify`` (the engine schedules the continuation, as asyncio would)."""

    __slots__ = ("_done", "notify", "token")

    def __init__(self, notify: Callable[[Any, Ticket | None, Exception | None], None], token: Any) -> None:
        self._done = False
        self.notify = notify
        self.token = token

    def done(self) -> bool:
        return self._done

    def cancelled(self) -> bool:
        return False

    def cancel(self) -> bool:
        self._done = True
        return True

    def set_result(self, ticket: Ticket) -> None:
        self._done = True
        self.notify(self.token, ticket, None)

    def set_exception(self, exc: BaseException) -> None:
        self._done = True
        self.notify(self.token, None, exc if isinstance(exc, Exception) else RuntimeError(str(exc)))

    def __call__(self) -> Waiter:
        """Its own factory: ``AdmissionGate.offer`` makes a waiter only if the request waits."""
        return self


async def _never(request: Request) -> Response:  # pragma: no cover - the simulator never sends
    raise RuntimeError("simulated deployments are not sent to")


class Replica:
    """The decision state of one gateway process."""

    __slots__ = ("admission", "auth_throttle", "clock", "cpu_free_s", "criticality", "deployments", "gates",
                 "index", "router")

    def __init__(self, index: int, router: Router, admission: AdmissionPolicy | None,
                 gates: dict[str, AdmissionGate], auth_throttle: KeyedGcra,
                 criticality: dict[str, Criticality]) -> None:
        self.index = index
        self.router = router
        self.admission = admission
        self.gates = gates
        self.auth_throttle = auth_throttle
        self.criticality = criticality
        self.deployments: dict[str, DeploymentHandle] = {
            d.name: d for g in router.groups.values() for d in g.deployments}
        self.cpu_free_s = 0.0  # when this replica's event loop is next idle
        self.clock: SimClock = router.clock  # type: ignore[assignment]

    def loop_lag_s(self) -> float:
        """The event loop's backlog now: how late a timer set now would fire."""
        lag = self.cpu_free_s - self.clock.t
        return lag if lag > 0.0 else 0.0


def build_replica(index: int, config: Config, deployments: dict[str, list[tuple[str, float, int]]], *,
                  clock: SimClock, rng: SimRng) -> Replica:
    """One replica's objects from ``config`` — the constructor calls of ``config/stack.py``.

    ``deployments`` maps a model group to its (name, weight, priority) deployments."""
    r = config.resilience
    b = r.breaker
    groups: dict[str, ModelGroup] = {}
    for model in config.models:
        handles = []
        for name, weight, priority in deployments[model.name]:
            breaker = CircuitBreaker(
                failure_rate_threshold=b.failure_rate_threshold, min_requests=b.min_requests,
                consecutive_failures_to_open=b.consecutive_failures, window_s=b.window_s,
                open_s=b.open_s, max_open_s=b.max_open_s, half_open_max_probes=b.half_open_max_probes,
                probe_successes_to_close=b.probe_successes_to_close,
            )
            dep_cfg = next(d for d in model.deployments if d.name == name)
            handles.append(DeploymentHandle(name, _never, breaker, clock, weight=weight, priority=priority,
                                            ttft_timeout_s=dep_cfg.ttft_timeout_s))
        op = OPERATIONS[model.kind]
        groups[model.name] = ModelGroup(model.name, op, tuple(handles), model.balancing)
    router = Router(
        groups, clock=clock, rng=rng,
        budget=RetryBudget(r.retry_budget_ratio, r.retry_min_per_s, r.retry_window_s),
        ejection=EjectionGuard(r.max_ejected_fraction),
        retry=RetrySettings(r.max_attempts, r.backoff_base_s, r.backoff_cap_s),
    )
    t = config.auth.failure_throttle
    throttle = KeyedGcra(t.per_s, t.burst, t.max_addresses)
    criticality = {tier.name: Criticality.parse(tier.criticality) for tier in config.tiers}
    replica = Replica(index, router, None, {}, throttle, criticality)
    a = config.admission
    if a.enabled:
        shares = {Criticality.parse(k): v for k, v in a.shares.items()}
        settings = gate_settings(a)
        replica.gates = gates = {
            name: AdmissionGate(name, clock=clock, limit=make_limit(a), limiter=PartitionedLimiter(shares),
                          settings=settings)
            for name in router.groups}
        replica.admission = AdmissionPolicy(
            gates, router, clock=clock, loop_lag_s=replica.loop_lag_s,
            lag_shed_s={Criticality.parse(k): v for k, v in a.loop_lag_shed_s.items()},
        )
    return replica
