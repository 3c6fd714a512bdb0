"""One simulated gateway replica: the live gateway's own decision objects, on a virtual clock.

Everything that decides is the production object, built from the gateway's ``Config`` by the
gateway's own builders (``config/registry.py``, which ``config/stack.py`` calls too): the admission
gate per model group (``policies/gate.py``: adaptive limit, partitioned limiter, queue, CoDel,
drain rate), the admission policy (early shedding, ``on_round_failed``), the router (``Router.plan``:
ejection, balancer, failover order; the retry budget and settings of each request's
``SendPlan``), and each deployment's handle (breaker, peak-EWMA, in-flight work, cooldown, first-token
timeout). Auth's failure throttle is the same ``KeyedGcra``.

The simulator (``sim.py``) drives them through their event methods, as the asyncio policies do: the
gate's ``offer``/``expire``/``release`` (with a future-like :class:`Waiter` in its queue), the retry
plan's ``next``/``on_outcome``/``requeue`` and the handle's ``begin``/``on_head``/``end``. It
schedules what asyncio would schedule and takes no decision of its own
(``tests/unit/surge/test_no_mirror.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from seawall.algorithms.gcra import KeyedGcra
from seawall.config.registry import connect_budgets, make_admission, make_gates, make_groups, make_handle, make_router
from seawall.config.schema import Config
from seawall.core.types import Criticality, Request, Response
from seawall.policies.admission import AdmissionPolicy
from seawall.policies.deployment import DeploymentHandle
from seawall.policies.gate import AdmissionGate, Ticket
from seawall.policies.route import Router

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
    """One replica's objects from ``config``, built by the gateway's own builders
    (``config/registry.py``). ``deployments`` maps a model group to its (name, weight, priority)
    deployments: the scenario's, in its order."""
    handles: dict[str, list[DeploymentHandle]] = {}
    for model in config.models:
        by_name = {d.name: d for d in model.deployments}
        handles[model.name] = [
            make_handle(name, _never, by_name[name].model_copy(update={"weight": weight, "priority": priority}),
                        config.resilience, clock)
            for name, weight, priority in deployments[model.name]]
    router = make_router(make_groups(config, handles), config.resilience, clock=clock, rng=rng)
    t = config.auth.failure_throttle
    throttle = KeyedGcra(t.per_s, t.burst, t.max_addresses)
    criticality = {tier.name: Criticality.parse(tier.criticality) for tier in config.tiers}
    replica = Replica(index, router, None, {}, throttle, criticality)
    a = config.admission
    if a.enabled:
        replica.gates = make_gates(a, list(router.groups), clock)
        connect_budgets(replica.gates, router.groups)
        replica.admission = make_admission(a, replica.gates, router, clock=clock, loop_lag_s=replica.loop_lag_s)
    return replica
