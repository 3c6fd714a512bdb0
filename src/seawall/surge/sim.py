"""The surge simulator: a discrete-event run of a scenario against N gateway replicas.

A virtual clock and a queue of events (arrivals, upstream completions, queue deadlines, backoffs,
client timeouts and retries, scenario events, gauge ticks) drive the gateway's own decision
objects (:mod:`seawall.surge.replica`), one set per replica, behind a random load balancer, in
front of a model of the upstream deployments that behaves like the mock upstream
(``seawall.mock``): at most ``max_in_flight`` requests at once and a 429 with the mock's
``retry-after`` beyond that, first token after the base latency, then ``tokens_per_s``.

Deterministic for a seed: arrivals and shapes come from per-tier generators
(:mod:`seawall.surge.traffic`), the gateway's randomness (balancer, backoff jitter), the clients'
(SDK jitter) and the load balancer's from their own seeded streams, and events due at the same
instant run first in, first out. Memory is bounded by the work in flight plus the
:class:`~seawall.surge.stats.Recorder` buckets: no per-request history is kept.

The client model is the OpenAI SDK's (``ClientBehaviour``); the gateway's CPU is modelled per
replica as one event loop (``GatewayCpu``): work beyond one core queues, and that queue is the
loop lag the admission policy sheds on.

Speed (``bench/sim.py``: ten million requests in under two minutes). Every request runs the
gateway's own decision code, so what the simulator can make cheap is only its own part: the event
queue is a heap of bare instants (floats compare far faster than tuples) with the events due at
each instant in a list, in the order they were scheduled; per-tier constants and the recorder's
series are looked up once, not per request; and the paths most requests take (a refusal, a client
retry, an invalid key) are written straight through rather than through small helpers. Beyond
that, a large run can be cut into shards that run on several cores (:func:`simulate`).
"""

from __future__ import annotations

import heapq
import math
import os
import pickle
import random
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from seawall.algorithms.backoff import full_jitter
from seawall.algorithms.outcome import Outcome, classify
from seawall.algorithms.pacing import RateLimitReport
from seawall.config.schema import Config
from seawall.core.errors import GatewayError
from seawall.core.types import Criticality
from seawall.mock.servers import DONE, FIRST, Accepted, BatchingServer, HostedServer, SlotsServer
from seawall.policies.admission import SAMPLE_MAX_LOOP_LAG_S
from seawall.policies.deployment import MAX_COOLDOWN_S, MIN_COOLDOWN_S
from seawall.policies.gate import MAX_RETRY_AFTER_S, AdmissionGate, Ticket
from seawall.policies.upstream_load import UpstreamLoad, report_load
from seawall.surge.profiles import gateway_config
from seawall.surge.replica import Replica, SimClock, SimRng, Waiter, build_replica
from seawall.surge.scenario import ClientBehaviour, Deployment, Scenario
from seawall.surge.stats import Recorder
from seawall.surge.traffic import FloodArrivals, tier_sources

__all__ = ["INVALID_TIER", "SimResult", "Simulation", "simulate"]

INVALID_TIER = "(invalid keys)"
_MOCK_DEFAULT_COMPLETION_TOKENS = 16  # seawall.mock.config.MockConfig.completion_tokens: the 429 hint's basis
_SDK_MAX_RETRY_AFTER_S = 120.0  # openai._constants.MAX_RETRY_AFTER_DELAY

# Attempt states
_IDLE, _CPU, _QUEUED, _WOKEN, _BACKOFF, _UPSTREAM = range(6)
# Upstream answers
_OK, _R429, _R500, _TIMEOUT, _DEADLINE, _R503, _R400 = range(7)

Server = SlotsServer | BatchingServer | HostedServer

Handler = Callable[[Any, Any], None]


class _Up:
    """One upstream deployment, shared by every replica: its behaviour model (the mock's own,
    :mod:`seawall.mock.servers`), the injected 500s, and for a batching server the requests it
    holds and the instant its next milestone is due (``wake_t``)."""

    __slots__ = ("down", "errors", "first_s", "hosted", "name", "random", "read_s", "reqs", "server", "total_s",
                 "wake_t")

    def __init__(self, d: Deployment, rng: random.Random, read_s: float, total_s: float) -> None:
        self.name = d.name
        self.server: Server = server_of(d)
        self.hosted = d.behaviour == "hosted"
        self.first_s = d.base_latency_s + d.first_token_delay_s  # until an injected 500 (times the factor)
        self.errors = d.error_rate
        self.down = False
        self.random = rng.random
        self.read_s = read_s  # the gateway's timeouts for this deployment
        self.total_s = total_s
        self.reqs: dict[int, _Req] = {}  # batching: request id -> request
        self.wake_t = math.inf

    def headroom(self, now: float) -> float | None:
        """What the deployment's rate-limit headers say (base.headroom_from), ``None`` without any."""
        state = self.server.rate_limits(now, self.name)
        if state is None:
            return None
        low = state.remaining_requests / state.limit_requests if state.limit_requests > 0 else 1.0
        if state.limit_tokens:
            low = min(low, (state.remaining_tokens or 0) / state.limit_tokens)
        return min(max(low, 0.0), 1.0)

    def rate_limits(self, now: float, retry_after_s: float | None = None) -> RateLimitReport | None:
        """What the deployment's rate-limit headers say (algorithms.pacing.parse_rate_limits)."""
        state = self.server.rate_limits(now, self.name)
        return None if state is None else state.report(retry_after_s)


def server_of(d: Deployment) -> Server:
    """The behaviour model of a scenario deployment: what ``seawall mock-upstream`` runs for it
    (``surge.live`` passes the same fields as flags)."""
    first_s = d.base_latency_s + d.first_token_delay_s
    interval_s = 1.0 / d.tokens_per_s if d.tokens_per_s > 0 else 0.0
    if d.behaviour == "batching":
        return BatchingServer(max_num_seqs=d.max_in_flight, tokens_per_s=d.tokens_per_s, overhead_s=first_s,
                              prefill_tokens_per_s=d.prefill_tokens_per_s, batch_slowdown=d.batch_slowdown,
                              kv_cache_tokens=d.kv_cache_tokens)
    if d.behaviour == "hosted":
        return HostedServer(requests_per_minute=d.requests_per_minute, tokens_per_minute=d.tokens_per_minute,
                            first_s=first_s, interval_s=interval_s, soft_concurrency=d.max_in_flight,
                            overloaded_rate=d.overloaded_rate)
    # the 429's retry-after: one default mock request's service time (seawall.mock.model.retry_after_s)
    retry_s = first_s + (_MOCK_DEFAULT_COMPLETION_TOKENS - 1) * interval_s
    return SlotsServer(d.max_in_flight, first_s, interval_s, retry_s)


class _TierContext:
    """What the engine needs of one tier on every request, looked up once: its criticality, its
    clients' behaviour, and its recorder series."""

    __slots__ = ("abandon_s", "admitted", "arrivals", "backoff_initial_s", "backoff_max_s", "coarse", "crit",
                 "honour_retry_after", "index", "latency", "max_retries", "no_retries", "offered", "ok", "outcomes",
                 "reasons", "timeout_s", "ttft", "user_fail", "user_fail_reasons", "user_ok")

    def __init__(self, index: int, crit: Criticality, client: ClientBehaviour, rec: Recorder) -> None:
        self.index = index
        self.crit = crit
        self.timeout_s = client.timeout_s
        self.abandon_s = client.abandon_after_s
        self.no_retries = client.retries == "none"
        self.max_retries = client.max_retries
        self.honour_retry_after = client.honour_retry_after
        self.backoff_initial_s = client.backoff_initial_s
        self.backoff_max_s = client.backoff_max_s
        tr = rec.tiers[index]
        self.arrivals = tr.arrivals
        self.offered = tr.offered
        self.admitted = tr.admitted
        self.outcomes = tr.outcomes
        self.ok = tr.outcomes["ok"]
        self.reasons = tr.reasons
        self.user_ok = tr.user_ok
        self.user_fail = tr.user_fail
        self.user_fail_reasons = tr.user_fail_reasons
        self.latency = tr.latency
        self.ttft = tr.ttft
        self.coarse = tr.coarse


class _Req:
    """One user request and the state of its current attempt (``gen`` invalidates stale events)."""

    __slots__ = (
        "abandon",
        "cancel_armed",
        "cdl",
        "completion",
        "crit",
        "ctx",
        "cut",
        "deadline",
        "dep",
        "first_t",
        "gate",
        "gen",
        "hint",
        "last_err",
        "limit_t",
        "max_tokens",
        "model",
        "n_out",
        "overloaded",
        "permit",
        "pos",
        "prior",
        "prompt",
        "replica",
        "requeues",
        "retries",
        "rid",
        "rtt_s",
        "sent",
        "seq",
        "started",
        "state",
        "stream",
        "t_end",
        "t_first",
        "t_recv",
        "ticket",
        "tier",
        "tried",
        "units",
        "up",
        "up_kind",
        "up_t0",
        "waiter",
    )

    abandon: bool
    cancel_armed: bool
    cut: bool
    cdl: float
    deadline: float
    dep: Any
    gate: Any
    hint: float | None
    last_err: Any
    limit_t: float
    overloaded: list[str]
    permit: Any
    pos: int
    prior: int
    replica: Replica
    requeues: int
    rid: int
    rtt_s: float | None
    sent: int
    seq: list[Any]
    started: float
    t_end: float
    t_first: float
    t_recv: float
    ticket: Any
    tried: list[str]
    up: _Up | None
    up_kind: int
    up_t0: float
    waiter: Waiter

    def __init__(self, ctx: _TierContext, units: float, stream: bool, completion: int, max_tokens: int | None,
                 model: str, first_t: float, prompt: int = 0) -> None:
        self.ctx = ctx
        self.prompt = prompt
        self.tier = ctx.index
        self.crit = ctx.crit
        self.units = units
        self.stream = stream
        self.completion = completion
        self.max_tokens = max_tokens
        # the tokens the upstream writes: the completion, capped by max_tokens
        self.n_out = completion if max_tokens is None or max_tokens >= completion else max_tokens
        self.model = model
        self.first_t = first_t
        self.retries = 0
        self.gen = 0
        self.state = _IDLE


# An error as the client sees it: (status, reason, retry_after_s or None, upstream status, error kind)
_Err = tuple[int, str, float | None, int | None, str | None]


@dataclass
class SimResult:
    """What one simulated run produced, ready for the report."""

    scenario: Scenario
    profile: str
    replicas: int
    seed: int
    recorder: Recorder
    wall_s: float
    events: int
    requests: int  # HTTP requests that reached the gateway replicas (client retries and floods too)
    user_requests: int
    upstream: dict[str, dict[str, Any]] = field(default_factory=dict)
    budget: dict[str, Any] = field(default_factory=dict)
    shards: int = 1

    @property
    def tiers(self) -> list[str]:
        return self.recorder.tier_names


class Simulation:
    """One run of one scenario under one gateway configuration. Use :func:`simulate`."""

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
        self.pending = 0
        self.requests = 0
        self.user_requests = 0
        self.events = 0

    # -- the engine ------------------------------------------------------------------------------

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

    # -- arrivals and the client -----------------------------------------------------------------

    def _arrive(self, ti: int, _: Any) -> None:
        now = self.clock.t
        src = self._sources[ti]
        prompt, max_tokens, completion, stream, model = src.draw()
        ctx = self._tiers[ti]
        req = _Req(ctx, float(prompt + (max_tokens or 256)), stream, completion, max_tokens, model, now, prompt)
        self.pending += 1
        self.user_requests += 1
        rec = self.recorder
        b = int(now * rec.inv_bucket)
        ctx.arrivals[b if b < rec.n else rec.n - 1] += 1
        nxt = src.arrivals.next()
        if nxt < math.inf:
            self._push(nxt, self._arrive, ti, None)
        self._send(req, None)

    def _send(self, req: _Req, _: Any) -> None:
        """The client sends an attempt (the first, or a retry) to a replica chosen by the balancer."""
        now = self.clock.t
        req.gen = gen = req.gen + 1
        ctx = req.ctx
        cdl = now + ctx.timeout_s
        abandon_s = ctx.abandon_s
        if abandon_s is not None and req.first_t + abandon_s < cdl:
            cdl = req.first_t + abandon_s
            req.abandon = True
        else:
            req.abandon = False
        req.cdl = cdl
        req.cancel_armed = False
        replica = self.replicas[int(self._lb() * self.n_replicas)]
        req.replica = replica
        wait_s = cdl - now
        if self._max_timeout_s < wait_s:
            wait_s = self._max_timeout_s
        req.deadline = now + wait_s  # the client's x-stainless-timeout
        self.requests += 1
        rec = self.recorder
        b = int(now * rec.inv_bucket)
        ctx.offered[b if b < rec.n else rec.n - 1] += 1
        free = replica.cpu_free_s
        if free > now:
            replica.cpu_free_s = free + self._cpu_rejected
            req.state = _CPU
            self._at(req, free, self._process, gen)
        else:
            replica.cpu_free_s = now + self._cpu_rejected
            self._process(req, gen)

    def _reply(self, req: _Req, err: _Err | None) -> None:
        """The gateway answers the current attempt (``err`` None: 200); the client reacts."""
        if err is None:
            self._succeed(req)
        else:
            self._fail(req, err[0], err[1], err[2])

    def _succeed(self, req: _Req) -> None:
        """The gateway answered 200: the user's request is done."""
        now = self.clock.t
        req.state = _IDLE
        req.gen += 1  # nothing more happens to this attempt
        rec = self.recorder
        n = rec.n
        ctx = req.ctx
        b = int(now * rec.inv_bucket)
        ctx.ok[b if b < n else n - 1] += 1
        t_recv = now + self._client_rtt
        latency_s = t_recv - req.first_t
        # Recorder.user_end, inlined
        b = int(t_recv * rec.inv_bucket)
        if b >= n:
            b = n - 1
        ctx.user_ok[b] += 1
        ctx.latency.add(latency_s)
        ctx.ttft.add((req.t_first if req.t_first >= 0 else now) + self._client_rtt - req.first_t)
        ctx.coarse[b].add(latency_s)
        if t_recv > rec.end_s:
            rec.end_s = t_recv
        self.pending -= 1

    def _fail(self, req: _Req, status: int, reason: str, retry_after: float | None) -> None:
        """The gateway answered an error: the path of every shed request. The client may retry."""
        now = self.clock.t
        req.state = _IDLE
        req.gen += 1  # nothing more happens to this attempt
        if reason == "upstream_429":
            outcome = "upstream_429"
        elif status == 503 or status == 429:
            outcome = "shed"
        else:
            outcome = "error"
        # Recorder.attempt_end, inlined
        rec = self.recorder
        b = int(now * rec.inv_bucket)
        if b >= rec.n:
            b = rec.n - 1
        ctx = req.ctx
        ctx.outcomes[outcome][b] += 1
        reasons = ctx.reasons
        reasons[reason] = reasons.get(reason, 0) + 1
        series = rec.reason_series.get(reason)
        if series is None:
            series = rec.reason_series[reason] = [0] * rec.n
        series[b] += 1
        if retry_after is None and (status == 429 or status == 503):
            retry_after = 1.0
        if retry_after is not None:
            # What the server edge puts in retry-after-ms:
            # max(1, round(min(max(retry_after, 0.001), MAX_RETRY_AFTER_S) * 1000)) / 1000.0
            if retry_after < 0.001:
                retry_after = 0.001
            elif retry_after > MAX_RETRY_AFTER_S:
                retry_after = MAX_RETRY_AFTER_S
            ms = round(retry_after * 1000)
            retry_after = (ms if ms > 1 else 1) / 1000.0
        self._client_retry_or_fail(req, now + self._client_rtt, retry_after, reason,
                                   status >= 500 or status == 408 or status == 409 or status == 429)

    def _client_retry_or_fail(self, req: _Req, t_recv: float, retry_after: float | None, reason: str,
                              retryable: bool) -> None:
        ctx = req.ctx
        if ctx.no_retries or req.retries >= ctx.max_retries or not retryable:
            self._user_failed(req, t_recv, reason)
            return
        if ctx.honour_retry_after and retry_after is not None and 0 < retry_after <= _SDK_MAX_RETRY_AFTER_S:
            delay = retry_after
        else:
            delay = ctx.backoff_initial_s * 2.0 ** req.retries
            if ctx.backoff_max_s < delay:
                delay = ctx.backoff_max_s
            delay *= 1.0 - 0.25 * self._client_random()
        abandon_s = ctx.abandon_s
        if abandon_s is not None and t_recv + delay - req.first_t >= abandon_s:
            self._user_failed(req, t_recv, "abandoned")
            return
        req.retries += 1
        self._push(t_recv + delay, self._send, req, None)

    def _user_failed(self, req: _Req, t_s: float, reason: str) -> None:
        """Recorder.user_end for a failure, inlined."""
        rec = self.recorder
        b = int(t_s * rec.inv_bucket)
        ctx = req.ctx
        ctx.user_fail[b if b < rec.n else rec.n - 1] += 1
        reasons = ctx.user_fail_reasons
        reasons[reason] = reasons.get(reason, 0) + 1
        if t_s > rec.end_s:
            rec.end_s = t_s
        self.pending -= 1

    def _client_timeout(self, req: _Req, gen: int) -> None:
        """The client's per-attempt timeout (or the user's patience) ran out: it disconnects."""
        if req.gen != gen or req.state == _IDLE:
            return
        now = self.clock.t
        state = req.state
        if state == _QUEUED:
            req.waiter.cancel()
        elif state == _UPSTREAM:
            self._release_upstream(req)
            req.dep._finish(req.permit, req.units, Outcome.CANCELLED, None)
            self.recorder.router(now, req.sent + 1)
            if req.gate is not None:
                # An abandoned request gives no latency sample (AdmissionPolicy._release_after's
                # finally, for a stream the client left).
                req.gate.release(req.ticket, rtt_s=None, dropped=False)
        elif state == _BACKOFF:
            self.recorder.router(now, req.sent)
            if req.gate is not None:
                req.gate.release(req.ticket, rtt_s=None, dropped=False)
        # _CPU: nothing held yet. _WOKEN: the stale continuation gives its ticket back.
        req.state = _IDLE
        req.gen += 1
        reason = "abandoned" if req.abandon else "client_timeout"
        self.recorder.attempt_end(now, req.tier, "cancelled", reason)
        if req.abandon:
            self._user_failed(req, now, "abandoned")
            return
        self._client_retry_or_fail(req, now, None, reason, retryable=True)

    # -- the gateway: auth and admission ---------------------------------------------------------

    def _flood(self, address: int, _: Any) -> None:
        now = self.clock.t
        nxt = self._floods.next()
        if nxt is not None:
            self._push(nxt[0], self._flood, nxt[1], None)
        replica = self.replicas[int(self._lb() * self.n_replicas)]
        free = replica.cpu_free_s
        replica.cpu_free_s = (free if free > now else now) + self._cpu_auth
        self.requests += 1
        rec = self.recorder
        b = int(now * rec.inv_bucket)
        if b >= rec.n:
            b = rec.n - 1
        tr = rec.tiers[-1]  # INVALID_TIER
        tr.arrivals[b] += 1
        tr.offered[b] += 1
        key = self._floods.keys[address]
        throttle = replica.auth_throttle
        # AuthPolicy.authenticate for a well-formed but unknown key
        if throttle.would_wait(key, now) > 0:
            reason = "auth_throttle"
        else:
            throttle.take(key, now)
            reason = "invalid_api_key"
        # Recorder.attempt_end, inlined
        tr.outcomes["rejected_auth"][b] += 1
        tr.reasons[reason] = tr.reasons.get(reason, 0) + 1
        series = rec.reason_series.get(reason)
        if series is None:
            series = rec.reason_series[reason] = [0] * rec.n
        series[b] += 1

    def _process(self, req: _Req, gen: int) -> None:
        """The replica's event loop gets to the request: auth passed (a valid key), admission."""
        if req.gen != gen:
            return
        replica = req.replica
        admission = replica.admission
        if admission is not None:
            try:
                admission._early(req.crit)
            except GatewayError as err:
                self._fail(req, err.status, err.reason, err.retry_after_s)
                return
            req.requeues = 0
            req.prior = 0
            req.ticket = None
            req.tried = []
            req.t_first = -1.0
            gate = replica.gates.get(req.model)
            if gate is not None:
                req.gate = gate
                self._offer(req)
                return
        else:
            req.requeues = 0
            req.prior = 0
            req.ticket = None
            req.tried = []
            req.t_first = -1.0
        req.gate = None
        self._start(req, None)

    def _offer(self, req: _Req) -> None:
        gate: AdmissionGate = req.gate
        waiter = Waiter(self._woken, req)
        try:
            offered = gate.offer(req.crit, req.units, req.deadline, waiter, req.requeues > 0)
        except GatewayError as err:
            self._fail(req, err.status, err.reason, err.retry_after_s)
            return
        if offered.__class__ is Ticket:
            self._start(req, offered)
            return
        req.state = _QUEUED
        req.waiter = waiter
        self._at(req, offered.deadline_s, self._queue_timer, req.gen)  # type: ignore[union-attr]

    def _queue_timer(self, req: _Req, gen: int) -> None:
        if req.gen == gen and req.state == _QUEUED:
            rejection = req.gate.expire(req.waiter, req.crit, req.units)
            if rejection is not None:
                self._woken(req, None, rejection)

    def _woken(self, req: _Req, ticket: Any, exc: Exception | None) -> None:
        """The gate started (or refused) a waiting request: continue it, as asyncio would, next."""
        if req.state == _QUEUED:
            req.state = _WOKEN
        self._push(self.clock.t, self._resume, req, (req.gen, ticket, exc))

    def _resume(self, req: _Req, arg: tuple[int, Any, Exception | None]) -> None:
        gen, ticket, exc = arg
        if req.gen != gen:
            if ticket is not None:  # started as its caller went away: acquire() gives it back
                req.gate.release(ticket, rtt_s=None, dropped=False)
            return
        if exc is not None:
            err = exc if isinstance(exc, GatewayError) else GatewayError(str(exc))
            self._fail(req, err.status, err.reason, err.retry_after_s)
            return
        self._start(req, ticket)

    def _start(self, req: _Req, ticket: Any) -> None:
        now = self.clock.t
        req.ticket = ticket
        req.started = now
        req.replica.cpu_free_s += self._cpu_admitted
        rec = self.recorder
        b = int(now * rec.inv_bucket)
        req.ctx.admitted[b if b < rec.n else rec.n - 1] += 1
        self._route(req)

    # -- the gateway: the router -----------------------------------------------------------------

    def _route(self, req: _Req) -> None:
        """``Router.__call__`` up to its loop."""
        now = self.clock.t
        router = req.replica.router
        router.budget.on_request(now)
        group = router.groups[req.model]
        order = router.plan(group, now)
        req.sent = 0
        req.overloaded = []
        req.last_err = None
        if not order:
            self._router_failed(req, (503, "all_ejected", 1.0, None, None))
            return
        attempts = router.retry.max_attempts
        # (order * attempts)[: max(len(order), attempts)]; plan() returns a fresh list
        req.seq = order if attempts <= len(order) else (order * attempts)[:attempts]
        req.pos = 0
        self._router_loop(req, None)

    def _router_loop(self, req: _Req, resume: Any) -> None:
        """``Router.__call__``'s loop over deployments in failover order."""
        router = req.replica.router
        if resume is not None and self._attempt(req, resume):
            return
        seq = req.seq
        max_attempts = router.retry.max_attempts
        while req.pos < len(seq):
            dep = seq[req.pos]
            req.pos += 1
            if req.prior + req.sent >= max_attempts + req.requeues:  # one plan per request (Router.__call__)
                break
            if dep.name in req.overloaded:
                continue
            if req.sent > 0:
                now = self.clock.t
                if now >= req.deadline:
                    break
                if not router.budget.try_retry(now, req.retries):
                    break
                if dep.name in req.tried:
                    r = router.retry
                    wait_s = full_jitter(req.sent - 1, r.backoff_base_s, r.backoff_cap_s, router.rng.random())
                    if now + wait_s >= req.deadline:
                        break
                    req.state = _BACKOFF
                    self._at(req, now + wait_s, self._backoff_done, (req.gen, dep))
                    return
            if self._attempt(req, dep):
                return
        err = req.last_err
        if err is None:
            err = (503, "no_deployment", 1.0, None, None)
        self._router_failed(req, err)

    def _backoff_done(self, req: _Req, arg: tuple[int, Any]) -> None:
        gen, dep = arg
        if req.gen == gen and req.state == _BACKOFF:
            self._router_loop(req, dep)

    def _attempt(self, req: _Req, dep: Any) -> bool:
        """``DeploymentHandle.attempt``: False when the breaker refused (nothing was sent)."""
        now = self.clock.t
        paced_s = dep.paced_for_s(now, req.units)
        if paced_s > 0.0:
            req.last_err = (503, "paced", paced_s, 429, None)  # deployment.Paced: nothing sent
            return False
        permit = dep.breaker.allow(now)
        if permit is None:
            req.last_err = (503, "breaker_open", dep.breaker.retry_after_s(now), None, None)
            return False
        if dep.pacer is not None:
            dep.pacer.on_send(now, req.units)
        req.tried.append(dep.name)
        dep.inflight_units += req.units
        req.dep = dep
        req.permit = permit
        req.up_t0 = now
        req.state = _UPSTREAM
        up = self.ups[dep.name]
        rtt = self._net_rtt
        tag = (req.gen, req.sent)  # this attempt's events (a failover keeps the generation)
        req.up = None
        if up.down:
            req.up_kind = _R500
            self._at(req, now + rtt, self._upstream_done, tag)
            return True
        server = up.server
        admitted = server.submit(now, req.prompt, req.n_out, reserve_tokens=int(req.units), key=up.name,
                                 sample=up.random() if up.hosted else 1.0)
        if admitted.__class__ is not Accepted:
            req.up_kind = _R429 if admitted.status == 429 else _R503 if admitted.overloaded else _R400  # type: ignore[union-attr]
            req.hint = admitted.retry_after_s  # type: ignore[union-attr]
            self._at(req, now + rtt, self._upstream_done, tag)
            return True
        req.rid = admitted.rid
        req.up = up
        limit_t = now + up.total_s
        if req.deadline < limit_t:
            limit_t = req.deadline
        req.limit_t = limit_t
        if up.errors and up.random() < up.errors:
            req.up_kind = _R500
            t = now + rtt + up.first_s * server.factor
            if limit_t < t:
                t = limit_t
            self._at(req, t if t > now else now, self._upstream_done, tag)
            return True
        first_s = admitted.first_s
        req.up_kind = _OK
        if first_s is None:
            # A batching server decides when the tokens come: its milestones drive the attempt
            # (_up_wake), and the head timeout is a timer of its own.
            up.reqs[req.rid] = req
            req.cut = False
            t = now + up.read_s
            self._at(req, limit_t if limit_t < t else t, self._head_timer, tag)
            self._wake(up)
            return True
        n = req.n_out
        total_s = first_s + (n - 1 if n > 1 else 0) * admitted.interval_s
        head_s = first_s if req.stream else total_s  # when the response head (first byte) arrives
        if head_s > up.read_s or now + rtt + head_s > limit_t:
            # the deployment's own timeout, or the request's deadline first (UpstreamClient._timed_out)
            req.up_kind = _TIMEOUT if head_s > up.read_s or req.deadline > now + up.total_s else _DEADLINE
            t = now + up.read_s
            if limit_t < t:
                t = limit_t
            self._at(req, t if t > now else now, self._upstream_done, tag)
            return True
        t_end = now + rtt + total_s
        req.cut = limit_t < t_end  # a stream that runs into its deadline or total timeout breaks mid-way
        req.t_end = limit_t if req.cut else t_end
        if req.stream:
            self._at(req, now + rtt + first_s, self._first_byte, tag)
        else:
            self._at(req, req.t_end, self._upstream_done, tag)
        return True

    # -- a batching upstream's milestones ---------------------------------------------------------

    def _wake(self, up: _Up) -> None:
        """Make sure the batching server is run at its next milestone."""
        t = up.server.next_event_s()
        if t < up.wake_t:
            up.wake_t = t
            self._push(t, self._up_wake, up, t)

    def _up_wake(self, up: _Up, t: float) -> None:
        if t != up.wake_t:
            return  # superseded by an earlier wake
        up.wake_t = math.inf
        now = self.clock.t
        reqs = up.reqs
        rtt = self._net_rtt
        for rid, kind, at in up.server.advance(now):
            req = reqs.get(rid)
            if req is None:
                continue
            if kind == FIRST:
                if req.stream:
                    self._at(req, at + rtt, self._first_byte, (req.gen, req.sent))
            elif kind == DONE:
                req.t_end = at + rtt
                self._at(req, at + rtt, self._stream_end if req.stream else self._upstream_done,
                         (req.gen, req.sent))
        self._wake(up)

    def _head_timer(self, req: _Req, tag: tuple[int, int]) -> None:
        """No response head from a batching server within the read timeout or the deadline."""
        if req.gen != tag[0] or req.sent != tag[1] or req.state != _UPSTREAM or req.t_first >= 0:
            return
        now = self.clock.t
        # The request's own deadline first: CANCELLED (outcome.py), else the deployment's timeout.
        req.up_kind = _DEADLINE if req.limit_t == req.deadline and now < req.up_t0 + self.ups[req.dep.name].read_s \
            else _TIMEOUT
        self._upstream_done(req, tag)

    def _cut(self, req: _Req, tag: tuple[int, int]) -> None:
        """A batching server's stream runs into the request's deadline or the total timeout."""
        if req.gen != tag[0] or req.sent != tag[1] or req.state != _UPSTREAM:
            return
        req.cut = True
        req.t_end = self.clock.t
        self._stream_end(req, tag)

    def _sample(self, req: _Req, now: float) -> float | None:
        """The admission policy's latency sample (AdmissionPolicy._sample): seconds per output token
        of the whole request; none while the replica's event loop lags."""
        if req.replica.cpu_free_s - now > SAMPLE_MAX_LOOP_LAG_S:  # Replica.loop_lag_s
            return None
        return (now - req.started) / (1 + req.n_out)

    def _release_upstream(self, req: _Req) -> None:
        """The attempt left the upstream (done, failed, or its client went away)."""
        up = req.up
        if up is not None:
            req.up = None
            up.server.finish(self.clock.t, req.rid)
            if up.reqs:
                if up.reqs.pop(req.rid, None) is not None:
                    self._wake(up)  # an abort frees a slot for the next in the queue

    def _first_byte(self, req: _Req, tag: tuple[int, int]) -> None:
        """A stream's first event: the router returns the response (breaker result at its end)."""
        if req.gen != tag[0] or req.sent != tag[1] or req.state != _UPSTREAM or req.t_first >= 0:
            return
        now = self.clock.t
        dep = req.dep
        dep.ewma.observe(now, now - req.up_t0)
        up = req.up
        if up is not None:
            headroom = up.headroom(now)
            if headroom is not None:
                dep.headroom = headroom
            dep.observe_rate_limits(now, up.rate_limits(now))
        req.t_first = now
        if up is not None and req.rid in up.reqs:
            self._at(req, req.limit_t, self._cut, tag)  # batching: DONE comes as a milestone
        else:
            self._at(req, req.t_end, self._stream_end, tag)

    def _stream_end(self, req: _Req, tag: tuple[int, int]) -> None:
        if req.gen != tag[0] or req.sent != tag[1] or req.state != _UPSTREAM:
            return
        self._release_upstream(req)
        now = self.clock.t
        broke = req.cut
        # A break at the request's own deadline tells nothing about the deployment (outcome.py).
        outcome = (Outcome.SUCCESS if not broke else Outcome.CANCELLED if req.t_end >= req.deadline
                   else Outcome.FAILURE)
        req.dep._finish(req.permit, req.units, outcome, None)
        if req.gate is not None:
            req.gate.release(req.ticket, rtt_s=None if broke else self._sample(req, now), dropped=False)
        self._router_done(now, req.sent + 1)
        # after the first byte nothing is retried: the stream ends with an error event
        if broke:
            self._fail(req, 502, "upstream_timeout", None)
        else:
            self._succeed(req)

    def _router_done(self, now: float, attempts: int) -> None:
        """Recorder.router, inlined: one request left the router after ``attempts`` attempts."""
        rec = self.recorder
        b = int(now * rec.inv_bucket)
        if b >= rec.n:
            b = rec.n - 1
        rec.gateway_requests[b] += 1
        rec.upstream_attempts[b] += attempts

    def _upstream_done(self, req: _Req, tag: tuple[int, int]) -> None:
        if req.gen != tag[0] or req.sent != tag[1] or req.state != _UPSTREAM:
            return
        now = self.clock.t
        dep = req.dep
        kind = req.up_kind
        up = req.up
        if kind == _OK and up is not None:
            dep.ewma.observe(now, now - req.up_t0)
            headroom = up.headroom(now)
            if headroom is not None:
                dep.headroom = headroom
            dep.observe_rate_limits(now, up.rate_limits(now))
            self._release_upstream(req)
            dep._finish(req.permit, req.units, Outcome.SUCCESS, None)
            if req.gate is not None:
                req.gate.release(req.ticket, rtt_s=self._sample(req, now), dropped=False)
            self._router_done(now, req.sent + 1)
            self._succeed(req)
            return
        self._release_upstream(req)
        if kind == _R429:
            hint_s = req.hint if req.hint is not None else 0.0
            err: _Err = (503, "upstream_429", hint_s, 429, None)
            dep.cooldown_until_s = now + min(max(hint_s, MIN_COOLDOWN_S), MAX_COOLDOWN_S)
            dep.observe_rate_limits(now, self.ups[dep.name].rate_limits(now, req.hint), refused=True, units=req.units)
            dep._finish(req.permit, req.units, Outcome.OVERLOADED, 0.0)
            req.overloaded.append(dep.name)
        elif kind == _R500:
            err = (502, "upstream_500", None, 500, None)
            dep._finish(req.permit, req.units, Outcome.FAILURE, None)
        elif kind == _R503:
            err = (502, "upstream_503", None, 503, None)  # base.status_error: a 5xx is an UpstreamError
            dep._finish(req.permit, req.units, Outcome.FAILURE, None)
        elif kind == _R400:
            # base.UpstreamRejected: not retryable, the router gives up at once
            dep._finish(req.permit, req.units, Outcome.CLIENT_ERROR, None)
            req.sent += 1
            self._router_failed(req, (400, "client_error", None, 400, None))
            return
        elif kind == _TIMEOUT:
            err = (504, "upstream_timeout", None, None, "timeout")
            dep._finish(req.permit, req.units, Outcome.FAILURE, None)
        else:
            err = (504, "deadline", None, None, "deadline")
            dep._finish(req.permit, req.units, Outcome.CANCELLED, None)
        req.sent += 1
        req.last_err = err
        req.state = _BACKOFF  # holds its ticket, nothing upstream: a client timeout now is as in a backoff
        self._router_loop(req, None)

    def _router_failed(self, req: _Req, err: _Err) -> None:
        """The router gave up: the admission policy's ``except GatewayError`` branch."""
        now = self.clock.t
        self._router_done(now, req.sent)
        gate = req.gate
        status, reason, retry_after, up_status, error_kind = err
        if gate is None:
            self._fail(req, status, reason, retry_after)
            return
        if up_status is None and error_kind is None:
            outcome = Outcome.FAILURE if status >= 500 else Outcome.CLIENT_ERROR
        else:
            outcome = classify(up_status, error_kind)
        dropped = outcome is Outcome.OVERLOADED or error_kind == "timeout"
        gate.release(req.ticket, rtt_s=None, dropped=dropped)
        req.ticket = None
        admission = req.replica.admission
        if (outcome is Outcome.OVERLOADED and admission is not None and req.requeues < admission.max_requeues
                and req.replica.router.budget.try_retry(now, req.retries)):
            req.requeues += 1
            req.prior += req.sent
            self._offer(req)
            return
        if outcome is Outcome.OVERLOADED:
            retry_after = max(retry_after or 0.0, gate.retry_after_s(req.crit, req.units))
        self._fail(req, status, reason, retry_after)

    def _poll_metrics(self, replica: Replica, arg: tuple[str, str, float]) -> None:
        """A replica's metrics poller reads the server (edges/upstream_metrics.py): the same gauges
        the mock serves on /metrics, applied by the gateway's own report_load."""
        model, dep_name, interval_s = arg
        now = self.clock.t
        server = self.ups[dep_name].server
        server.advance(now)
        g = server.gauges()
        load = UpstreamLoad(g["running"], g["waiting"], g.get("kv_cache_usage"))
        report_load(replica.gates.get(model), replica.deployments[dep_name], load, now)
        if now < self.scenario.duration_s or self.pending > 0:
            self._push(now + interval_s, self._poll_metrics, replica, arg)

    # -- scenario events and gauges --------------------------------------------------------------

    def _schedule_event(self, event: Any) -> None:
        kind = event.kind
        if kind == "invalid_key_flood":
            return  # FloodArrivals
        at = event.at_s + (event.cold_start_s if kind == "capacity_added" else 0.0)
        self._push(at, self._apply_event, event, None)

    def _apply_event(self, event: Any, _: Any) -> None:
        up = self.ups[event.deployment]
        kind = event.kind
        if up.reqs:
            up.server.advance(self.clock.t)  # what ran so far ran at the old speed
        if kind == "deployment_down":
            up.down = True
        elif kind == "deployment_slow":
            up.server.set_factor(event.factor)
        elif kind == "deployment_recover":
            up.down = False
            up.server.set_factor(1.0)
        elif kind == "capacity_added":
            up.server.grow(event.max_in_flight)
        self._wake(up)

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


def capacity_of(server: Server) -> int:
    """Slots, sequences decoding at once, or the concurrency at which a provider gets twice as slow."""
    if isinstance(server, BatchingServer):
        return server.max_num_seqs
    if isinstance(server, HostedServer):
        return server.soft_concurrency
    return server.capacity or 0


def simulate(scenario: Scenario, profile: str = "seawall", *, replicas: int | None = None, seed: int | None = None,
             bucket_s: float | None = None, shards: int = 1, processes: int | None = None) -> SimResult:
    """Run ``scenario`` under the gateway configuration ``profile`` (see :mod:`seawall.surge.profiles`).

    ``shards`` > 1 cuts the run into that many independent simulations, each with its share of the
    replicas, of the arrivals and of every upstream's capacity (:meth:`Scenario.split`), run on up to
    ``processes`` cores (default: all) and merged. Replicas only meet at the upstreams, and a random
    balancer gives each replica an independent share of the traffic, so the one thing a shard
    changes is that an upstream's slots are divided between the shards instead of pooled: a shard may
    get a 429 while another has a free slot. The result depends on the seed and ``shards``, never
    on ``processes``; ``bench/sim.py`` measures what sharding changes."""
    config = gateway_config(scenario, profile)
    n = replicas or scenario.gateway.replicas
    if shards == 1:
        return Simulation(scenario, config, profile=profile, replicas=n, seed=seed, bucket_s=bucket_s).run()
    if not 1 <= shards <= n:
        raise ValueError(f"shards must be between 1 and the number of replicas ({n})")
    started = time.perf_counter()
    parts = [n * (i + 1) // shards - n * i // shards for i in range(shards)]
    base_seed = scenario.seed if seed is None else seed
    if bucket_s is None:
        bucket_s = Recorder([], scenario.duration_s).bucket_s
    jobs = [(piece, config, profile, part, base_seed * 1_000_003 + 7_919 * (i + 1), bucket_s)
            for i, (piece, part) in enumerate(zip(scenario.split(parts), parts, strict=True))]
    workers = max(1, min(shards, processes or os.cpu_count() or 1))
    if workers == 1:
        results = [run_shard(job) for job in jobs]
    else:
        with ThreadPoolExecutor(workers) as pool:  # each thread waits on one child process
            results = list(pool.map(_run_shard_in_child, jobs))
    return _merged(scenario, profile, base_seed, parts, results, time.perf_counter() - started)


ShardJob = tuple[Scenario, Config, str, int, int, float]


def run_shard(job: ShardJob) -> SimResult:
    scenario, config, profile, replicas, seed, bucket_s = job
    return Simulation(scenario, config, profile=profile, replicas=replicas, seed=seed, bucket_s=bucket_s).run()


def _run_shard_in_child(job: ShardJob) -> SimResult:
    """:func:`run_shard` in a fresh interpreter (``seawall.surge._shard``), over pipes."""
    child = subprocess.run([sys.executable, "-m", "seawall.surge._shard"], check=False, capture_output=True,
                           input=pickle.dumps(job, protocol=pickle.HIGHEST_PROTOCOL))
    if child.returncode != 0:
        tail = child.stderr.decode(errors="replace").strip().splitlines()[-1:] or ["(no output)"]
        raise RuntimeError(f"a simulation shard failed (exit {child.returncode}): {tail[0]}")
    result: SimResult = pickle.loads(child.stdout)
    return result


def _budget(requests: int, retries: int, denied: int) -> dict[str, Any]:
    """The retry budget's totals over replicas, and the amplification they make."""
    return {"requests": requests, "retries": retries, "denied": denied,
            "amplification": (requests + retries) / requests if requests else None}


def _merged(scenario: Scenario, profile: str, seed: int, parts: list[int], results: list[SimResult],
            wall_s: float) -> SimResult:
    """One result from the shards of a run (see :func:`simulate`)."""
    total = sum(parts)

    def gauge(name: str, values: list[float | None]) -> float | None:
        # Per replica (mean, fraction): weighted by the shard's replicas; extremes: the extreme;
        # everything else is a total over the replicas or over an upstream's shares.
        present = [(v, w) for v, w in zip(values, parts, strict=True) if v is not None]
        if name.endswith(".mean") or name.startswith("breaker_open_fraction."):
            return sum(v * w for v, w in present) / sum(w for _, w in present)
        if name.endswith(".min"):
            return min(v for v, _ in present)
        if name.endswith(".max"):
            return max(v for v, _ in present)
        return sum(v for v, _ in present)

    recorder = results[0].recorder
    recorder.merge([r.recorder for r in results[1:]], gauge)
    upstream: dict[str, dict[str, Any]] = {}
    for r in results:
        for name, figures in r.upstream.items():
            into = upstream.setdefault(name, {})
            for key, value in figures.items():
                into[key] = into.get(key, 0) + value  # peak_in_flight: the sum of the shards' peaks
    budget = _budget(*(sum(r.budget[key] for r in results) for key in ("requests", "retries", "denied")))
    return SimResult(scenario=scenario, profile=profile, replicas=total, seed=seed, recorder=recorder, wall_s=wall_s,
                     events=sum(r.events for r in results), requests=sum(r.requests for r in results),
                     user_requests=sum(r.user_requests for r in results), upstream=upstream, budget=budget,
                     shards=len(parts))
