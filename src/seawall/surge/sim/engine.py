"""The simulation: a virtual clock and a queue of events, over the client, gateway and upstream parts.

The event queue is a heap of bare instants (floats compare far faster than tuples) with the events
due at each instant in a list, in the order they were scheduled; events due at the same instant run
first in, first out, so a run is deterministic for a seed. Gauges (limits, queues, upstream
occupancy, breakers, loop lag) are sampled once per recorder bucket.
"""

from __future__ import annotations

import heapq
import math
import random
import time
from typing import Any

from seawall.config.schema import Config
from seawall.mock.servers import BatchingServer
from seawall.surge.replica import Replica, SimClock, SimRng, build_replica
from seawall.surge.scenario import Scenario
from seawall.surge.sim.client import ClientSide
from seawall.surge.sim.gateway import GatewaySide
from seawall.surge.sim.state import INVALID_TIER, Handler, SimResult, _Req, _TierContext
from seawall.surge.sim.upstream import UpstreamSide, _Up, capacity_of
from seawall.surge.stats import Recorder
from seawall.surge.traffic import FloodArrivals, tier_sources

__all__ = ["Simulation"]


class Simulation(ClientSide, GatewaySide, UpstreamSide):
    """One run of one scenario under one gateway configuration. Use :func:`~seawall.surge.sim.simulate`."""

    def __init__(self, scenario: Scenario, config: Config, *, profile: str = "custom", replicas: int | None = None,
                 seed: int | None = None, bucket_s: float | None = None) -> None:
        self.scenario = scenario
        self.config = config
        self.profile = profile
        self.seed = scenario.seed if seed is None else seed
        self.n_replicas = replicas or scenario.gateway.replicas
        self.clock = SimClock(0.0)
        master = random.Random(self.seed * 1_000_003 + 5)
        self._lb = random.Random(master.random()).random
        self._client_random = random.Random(master.random()).random
        gw_random = random.Random(master.random())
        tiers = list(scenario.tiers)
        self.recorder = Recorder([*tiers, INVALID_TIER], scenario.duration_s, bucket_s=bucket_s)
        try:
            crits = [config.criticality_of(t) for t in tiers]
        except KeyError as exc:
            known = ", ".join(t.name for t in config.tiers)
            raise ValueError(f"scenario tier {exc} is not a gateway tier ({known})") from None
        self._tiers = [_TierContext(i, crits[i], scenario.client_of(t), self.recorder) for i, t in enumerate(tiers)]
        self._sources = tier_sources(scenario, self.seed)
        self._floods = FloodArrivals(scenario, random.Random(master.random()))
        deps = {m.name: [(d.name, d.weight, d.priority) for d in m.deployments] for m in scenario.upstream.models}
        rng = SimRng(gw_random.random)
        self.replicas: list[Replica] = [build_replica(i, config, deps, clock=self.clock, rng=rng)
                                        for i in range(self.n_replicas)]
        timeouts = {}
        self._metrics: list[tuple[str, str, float]] = []  # (model, deployment, poll interval) read by replicas
        model_names = [m.name for m in config.models]
        for model in config.models:
            for i, dep_cfg in enumerate(model.deployments):
                dep_name = config.deployment_name(model_names.index(model.name), i)
                timeouts[dep_name] = dep_cfg.timeouts
                if dep_cfg.metrics_url is not None:
                    self._metrics.append((model.name, dep_name, dep_cfg.metrics_interval_s))
        self._poll_random = random.Random(master.random()).random
        up_random = random.Random(master.random())
        self.ups: dict[str, _Up] = {}
        for _, d in scenario.deployments():
            self.ups[d.name] = _Up(d, random.Random(up_random.random()), timeouts[d.name].read_s,
                                   timeouts[d.name].total_s)
        self._net_rtt = scenario.upstream.network_rtt_s
        self._client_rtt = scenario.gateway.client_rtt_s
        cpu = scenario.gateway.cpu
        self._cpu_proxied = cpu.proxied_s
        self._cpu_rejected = cpu.rejected_s
        self._cpu_admitted = cpu.proxied_s - cpu.rejected_s  # what admission adds to a request's CPU
        self._cpu_auth = cpu.auth_failure_s
        self._max_timeout_s = config.server.max_timeout_s
        # The event queue: a heap of the distinct instants at which something is due, and for each
        # instant its event (handler, a, b), or a list of them in the order they were scheduled.
        self._times: list[float] = []
        self._due: dict[float, Any] = {}
        self._answers = {}  # (deployment, answer, first-token timeout) -> (error, outcome): gateway.py
        self.pending = 0
        self.requests = 0
        self.user_requests = 0
        self.events = 0

    def _push(self, t: float, fn: Handler, a: Any, b: Any) -> None:
        """Schedule ``fn(a, b)`` at ``t`` (after everything already due at ``t``)."""
        due = self._due.get(t)
        if due is None:
            self._due[t] = (fn, a, b)
            heapq.heappush(self._times, t)
        elif due.__class__ is tuple:
            self._due[t] = [due, (fn, a, b)]
        else:
            due.append((fn, a, b))

    def _at(self, req: _Req, t: float, fn: Handler, b: Any) -> None:
        """Schedule ``fn`` for the current attempt of ``req`` — or its client's timeout first."""
        if t > req.cdl and not req.cancel_armed:
            req.cancel_armed = True
            self._push(req.cdl, self._client_timeout, req, req.gen)
        due = self._due.get(t)
        if due is None:
            self._due[t] = (fn, req, b)
            heapq.heappush(self._times, t)
        elif due.__class__ is tuple:
            self._due[t] = [due, (fn, req, b)]
        else:
            due.append((fn, req, b))

    def run(self) -> SimResult:
        started = time.perf_counter()
        for i, src in enumerate(self._sources):
            t = src.arrivals.next()
            if t < math.inf:
                self._push(t, self._arrive, i, None)
        flood = self._floods.next()
        if flood is not None:
            self._push(flood[0], self._flood, flood[1], None)
        for event in self.scenario.events:
            self._schedule_event(event)
        for replica in self.replicas:
            for model, dep, interval_s in self._metrics:
                self._push(interval_s * self._poll_random(), self._poll_metrics, replica, (model, dep, interval_s))
        self._push(self.recorder.bucket_s / 2, self._tick, None, None)
        times = self._times
        due_at = self._due
        pop = heapq.heappop
        clock = self.clock
        horizon = self.scenario.duration_s + 3600.0
        events = 0
        while times:
            t = pop(times)
            if t > horizon:
                break
            clock.t = t
            # Events scheduled for this same instant while these run are due after them: a new entry.
            due = due_at.pop(t)
            if due.__class__ is tuple:
                due[0](due[1], due[2])
                events += 1
            else:
                for fn, a, b in due:
                    fn(a, b)
                events += len(due)
        self.events = events
        return SimResult(
            scenario=self.scenario, profile=self.profile, replicas=self.n_replicas, seed=self.seed,
            recorder=self.recorder, wall_s=time.perf_counter() - started, events=events,
            requests=self.requests, user_requests=self.user_requests,
            upstream={u.name: {"capacity_final": capacity_of(u.server), "peak_in_flight": u.server.peak,
                               "served": u.server.served, "rejected_429": u.server.rejected}
                      for u in self.ups.values()},
            budget=self._budget_totals(),
        )

    def _budget_totals(self) -> dict[str, Any]:
        requests = sum(r.router.budget.requests_total for r in self.replicas)
        retries = sum(r.router.budget.retries_total for r in self.replicas)
        denied = sum(r.router.budget.denied_total for r in self.replicas)
        return _budget(requests, retries, denied)

    def _tick(self, _: Any, __: Any) -> None:
        now = self.clock.t
        rec = self.recorder
        for group in self.scenario.upstream.models:
            name = group.name
            limits = [r.gates[name].limit.limit for r in self.replicas if name in r.gates]
            if limits:
                rec.gauge(f"limit_units.{name}.mean", now, sum(limits) / len(limits))
                rec.gauge(f"limit_units.{name}.min", now, min(limits))
                rec.gauge(f"limit_units.{name}.max", now, max(limits))
                rec.gauge(f"limit_units.{name}.total", now, sum(limits))
                rec.gauge(f"inflight_units.{name}.total", now,
                          sum(r.gates[name].limiter.inflight for r in self.replicas))
                rec.gauge(f"queued.{name}.total", now, float(sum(len(r.gates[name].queue) for r in self.replicas)))
        for up in self.ups.values():
            server = up.server
            rec.gauge(f"upstream_in_flight.{up.name}", now, float(server.in_flight))
            rec.gauge(f"upstream_capacity.{up.name}", now, float(capacity_of(server)))
            if server.__class__ is BatchingServer:
                server.advance(now)
                rec.gauge(f"upstream_waiting.{up.name}", now, server.gauges()["waiting"])
            opened = sum(1 for r in self.replicas if r.deployments[up.name].is_open(now))
            rec.gauge(f"breaker_open_fraction.{up.name}", now, opened / self.n_replicas)
        rec.gauge("loop_lag_s.max", now, max(r.loop_lag_s() for r in self.replicas))
        if now < self.scenario.duration_s or self.pending > 0:
            self._push(now + rec.bucket_s, self._tick, None, None)


def _budget(requests: int, retries: int, denied: int) -> dict[str, Any]:
    """The retry budget's totals over replicas, and the amplification they make."""
    return {"requests": requests, "retries": retries, "denied": denied,
            "amplification": (requests + retries) / requests if requests else None}
