"""Building a running gateway from a :class:`Config`: stores, auth, upstreams and the policy stack.

The default policy order (outermost first) and why each sits where it does:

1. ``observe``   — first, so it sees every outcome including rejections by the layers below.
2. ``auth``      — before anything spends work on a request: resolves the tenant and tier from
                   headers alone, from memory, and throttles failed attempts per address.
3. ``lane``      — (lane processes only) turns away keys below the lane's criticality at once.
3b. ``quota``    — (when quotas are configured) each key's and tenant's requests/min, tokens/min,
                   concurrency and tokens/day, on Redis across replicas or local counters. After
                   auth because limits belong to the key and tenant; before admission so a caller
                   over its own quota never takes a place in the queue for shared capacity.
4. ``admission`` — criticality from tier and ``service_tier``; cheap rejects before the body is
                   parsed (event-loop lag, a tier already being shed); then the model group's gate:
                   adaptive limit, reserved shares, bounded queue. Before routing, so nothing is
                   sent upstream that the gateway cannot afford.
4b. ``guard``    — (when ``guard:`` is configured) safety stages on the prompt, each with its own
                   budget (policies/guard.py). After admission, so no safety work is spent on a
                   request the gateway cannot afford; before route, so nothing unsafe leaves.
5. ``route``     — innermost: model group -> deployment (breaker, attempt deadline, in-flight
                   work) -> upstream edge; failover within the deadline, paid from a retry budget.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from seawall.algorithms.gcra import KeyedGcra
from seawall.auth.keys import KeyRefresher, NegativeCache
from seawall.config.registry import (
    PROVIDERS,
    connect_budgets,
    make_admission,
    make_gates,
    make_groups,
    make_handle,
    make_router,
)
from seawall.config.schema import Config, Lane
from seawall.core.compose import Handler, Policy, compose
from seawall.core.errors import GatewayError, Overloaded
from seawall.core.types import Criticality, Request, Response
from seawall.edges.ledger import Ledger, LedgerRecord, guard_columns
from seawall.edges.looplag import LoopLagMonitor
from seawall.edges.metrics import GatewayMetrics
from seawall.edges.quota import QuotaService
from seawall.edges.stores import KeyAdmin, key_store_for, ledger_sink_for, response_store_for, slo_store_for
from seawall.edges.stores.stored_response import ResponseStore, StoredResponse
from seawall.edges.upstreams import Upstream
from seawall.env import Clock, Rng, SystemClock, SystemRng
from seawall.policies.admission import AdmissionPolicy
from seawall.policies.auth import AuthPolicy
from seawall.policies.deployment import DeploymentHandle
from seawall.policies.gate import AdmissionGate
from seawall.policies.lane import LanePolicy
from seawall.policies.observe import ObservePolicy
from seawall.policies.quota import QuotaPolicy, QuotaTable
from seawall.policies.route import ModelGroup, Router
from seawall.slo.runtime import SloRuntime

__all__ = ["STACK", "Runtime", "build_runtime"]

log = logging.getLogger("seawall")


@dataclass
class Runtime:
    """Everything a running gateway holds; the server edge reads ``handler`` and the state."""

    config: Config
    clock: Clock
    rng: Rng
    metrics: GatewayMetrics
    store: KeyAdmin
    keys: KeyRefresher
    auth: AuthPolicy
    router: Router | None = None
    handler: Handler = field(default_factory=lambda: _not_started)
    upstreams: list[Upstream] = field(default_factory=list)
    ledger: Ledger | None = None
    responses_store: ResponseStore = field(default_factory=lambda: _NoResponseStore())
    gates: dict[str, AdmissionGate] = field(default_factory=dict)
    lane: Lane | None = None  # this process serves one lane (see policies/lane.py)
    loop_lag: LoopLagMonitor | None = None
    quota: QuotaPolicy[QuotaService] | None = None
    slo: SloRuntime | None = None  # SLO counters, alerts, status page (seawall.slo)
    _mocks: list[Any] = field(default_factory=list)
    _background: list[Any] = field(default_factory=list)
    _purge: asyncio.Task[None] | None = None
    started: bool = False

    async def start(self) -> None:
        if self.started:
            return
        await self.keys.refresh(force=True)
        self.keys.start()
        start_listener = getattr(self.store, "start_listener", None)  # PostgreSQL: LISTEN/NOTIFY
        if start_listener is not None:
            start_listener(self.keys.poke)
        if self.quota is not None:
            self.quota.service.start()
        self.router = make_router(await self._groups(), self.config.resilience, clock=self.clock, rng=self.rng)
        self._register_gauges(self.router)
        jwt = self.auth.jwt
        if jwt is not None and self.config.auth.jwt is not None and self.config.auth.jwt.jwks_url:
            from seawall.edges.jwks import JwksRefresher

            refresher = JwksRefresher(self.config.auth.jwt.jwks_url, jwt, session=None, clock=self.clock,
                                      refresh_s=self.config.auth.jwt.jwks_refresh_s)
            refresher.start()
            self._background.append(refresher)
        if self.ledger is not None:
            self.ledger.start()
        if self.slo is not None:
            self.slo.start()
        policies = [policy for _, build in STACK if (policy := build(self)) is not None]
        self._start_metrics_pollers(self.router)
        self.handler = compose(policies, self.router)
        # In the background: a database that is slow or down at start must not delay serving.
        self._purge = asyncio.get_running_loop().create_task(self._purge_responses(), name="responses-purge")
        self.started = True

    async def _purge_responses(self) -> None:
        """Drop stored Responses API responses past their retention (reads never see them anyway)."""
        try:
            await self.responses_store.purge(self.clock.wall() - self.config.store.responses_retention_s)
        except Exception as exc:  # a store that is down now is no reason not to serve
            log.warning("could not purge old responses: %s", exc)

    def _start_metrics_pollers(self, router: Router) -> None:
        """One poller per deployment with a ``metrics_url``: its queue feeds the group's limit and
        the balancer (policies/upstream_load.py)."""
        from seawall.edges.upstream_metrics import UpstreamMetricsPoller
        from seawall.policies.upstream_load import UpstreamLoad, report_load

        for model in self.config.models:
            group = router.groups[model.name]
            gate = self.gates.get(model.name)
            for dep, handle in zip(model.deployments, group.deployments, strict=True):
                if dep.metrics_url is None:
                    continue

                def on_load(load: UpstreamLoad, now_s: float, gate: AdmissionGate | None = gate,
                            handle: DeploymentHandle = handle) -> None:
                    report_load(gate, handle, load, now_s)

                poller = UpstreamMetricsPoller(handle.name, dep.metrics_url, on_load, clock=self.clock,
                                               interval_s=dep.metrics_interval_s, timeout_s=dep.metrics_timeout_s)
                poller.start()
                self._background.append(poller)

    def _admission(self, router: Router) -> AdmissionPolicy:
        a = self.config.admission
        self.gates = make_gates(a, list(router.groups), self.clock)
        connect_budgets(self.gates, router.groups)
        self.loop_lag = LoopLagMonitor()
        self.loop_lag.start()
        lag = self.loop_lag
        gates = self.gates

        def limits() -> dict[tuple[str, ...], float]:
            return {(name,): g.limit.limit for name, g in gates.items()}

        def inflight() -> dict[tuple[str, ...], float]:
            return {(name, c.label): g.limiter.usage(c) for name, g in gates.items() for c in Criticality}

        def queued() -> dict[tuple[str, ...], float]:
            return {(name, c.label): float(g.queue.count(c)) for name, g in gates.items() for c in Criticality}

        m = self.metrics
        m.gauge_callback("seawall_admission_limit_units", "Current adaptive limit per model group "
                         "(estimated tokens in flight).", ["group"], limits)
        m.gauge_callback("seawall_admission_inflight_units", "Work in flight per group and criticality.",
                         ["group", "criticality"], inflight)
        m.gauge_callback("seawall_admission_queued", "Requests waiting for capacity.",
                         ["group", "criticality"], queued)
        m.gauge_callback("seawall_event_loop_lag_seconds", "How late the event loop runs timers.", [],
                         lambda: {(): lag.lag_s})
        return make_admission(a, self.gates, router, clock=self.clock, loop_lag_s=lambda: lag.lag_s,
                              on_shed=m.on_shed, on_admit=m.on_admit)

    def admission_state(self) -> dict[str, Any]:
        return {
            "loop_lag_s": round(self.loop_lag.lag_s, 4) if self.loop_lag else None,
            "groups": {name: gate.state() for name, gate in self.gates.items()},
        }

    def _register_gauges(self, router: Router) -> None:
        clock = self.clock
        states = {"closed": 0.0, "half_open": 1.0, "open": 2.0}

        def breakers() -> dict[tuple[str, ...], float]:
            now = clock.now()
            return {(d.name,): states[d.breaker.state(now).value]
                    for g in router.groups.values() for d in g.deployments}

        def inflight() -> dict[tuple[str, ...], float]:
            return {(d.name,): d.inflight_units for g in router.groups.values() for d in g.deployments}

        m = self.metrics
        m.gauge_callback("seawall_breaker_state", "Circuit breaker per deployment: 0 closed, 1 half-open,"
                         " 2 open.", ["deployment"], breakers)
        m.gauge_callback("seawall_deployment_inflight_units", "Estimated tokens in flight per deployment.",
                         ["deployment"], inflight)
        m.gauge_callback("seawall_retry_amplification", "Upstream attempts per unique request over the"
                         " retry window (1.0 = no retries).", [],
                         lambda: {(): router.budget.amplification(clock.now())})

    async def _groups(self) -> dict[str, ModelGroup]:
        """Each deployment's upstream adapter (by its provider kind, config/registry.py) and handle."""
        resilience = self.config.resilience
        handles: dict[str, list[DeploymentHandle]] = {}
        for mi, model in enumerate(self.config.models):
            handles[model.name] = []
            for di, dep in enumerate(model.deployments):
                name = self.config.deployment_name(mi, di)
                upstream = await PROVIDERS[dep.provider](name, dep, self.clock, self._start_mock)
                self.upstreams.append(upstream)
                handles[model.name].append(make_handle(name, upstream.send, dep, resilience, self.clock))
        return make_groups(self.config, handles)

    async def _start_mock(self, settings: Mapping[str, Any]) -> str:
        from seawall.mock.app import start_mock
        from seawall.mock.config import MockConfig

        runner, port = await start_mock(MockConfig.from_mapping(settings), host="127.0.0.1", port=0)
        self._mocks.append(runner)
        return f"http://127.0.0.1:{port}/v1"

    async def stop(self) -> None:
        await self.keys.stop()
        close_store = getattr(self.store, "close", None)
        if close_store is not None:
            await close_store()
        if self.quota is not None:
            await self.quota.service.stop()
        for bg in self._background:
            await bg.stop()
        for upstream in self.upstreams:
            await upstream.close()
        for runner in self._mocks:
            await runner.cleanup()
        if self.ledger is not None:
            await self.ledger.stop()
        if self._purge is not None and not self._purge.done():
            self._purge.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._purge
        if self.slo is not None:
            await self.slo.stop()
        await self.responses_store.close()
        if self.loop_lag is not None:
            await self.loop_lag.stop()
        self.started = False

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        """Ready unless the gateway never loaded keys; a store outage is *degraded*, not failed."""
        deps: dict[str, Any] = {"key_store": self.keys.state()}
        if self.ledger is not None:
            deps["ledger"] = self.ledger.state()
        if self.quota is not None:
            deps["quota_store"] = self.quota.service.state()
        if self.slo is not None:
            deps["slo"] = self.slo.state()
        for bg in self._background:
            deps[getattr(bg, "name", "jwks")] = bg.state
        statuses = [d.get("status") for d in deps.values()]
        ready = self.started and self.keys.loaded
        overall = "ok" if all(s == "ok" for s in statuses) else "degraded"
        if not ready:
            overall = "not_ready"
        # Upstreams are reported, not judged: one provider down is what failover is for, and
        # pulling the gateway out of the load balancer for it would turn an outage into a bigger one.
        now = self.clock.now()
        upstreams = {d.name: {"breaker": d.breaker.state(now).value, "inflight_units": round(d.inflight_units, 1)}
                     for g in (self.router.groups.values() if self.router else ()) for d in g.deployments}
        return ready, {"status": overall, "dependencies": deps, "upstreams": upstreams}


def _observe(rt: Runtime) -> Policy:
    hooks = [ledger_recorder(rt.ledger, rt.clock)] if rt.ledger is not None else []
    if rt.slo is not None:
        hooks.append(rt.slo.on_finish)
    return ObservePolicy(rt.metrics, clock=rt.clock, on_finish=_each(hooks))


def _each(hooks: list[Callable[[Request, Response | None, int, str], None]]
          ) -> Callable[[Request, Response | None, int, str], None] | None:
    """One ``on_finish`` calling each of ``hooks`` (None when there is none)."""
    if len(hooks) <= 1:
        return hooks[0] if hooks else None

    def each(request: Request, response: Response | None, status: int, reason: str) -> None:
        for hook in hooks:
            hook(request, response, status, reason)

    return each


def _lane(rt: Runtime) -> Policy | None:
    return None if rt.lane is None else LanePolicy(rt.lane.name, Criticality.parse(rt.lane.min_criticality))


def _admission(rt: Runtime) -> Policy | None:
    assert rt.router is not None
    return rt._admission(rt.router) if rt.config.admission.enabled else None


def _guard(rt: Runtime) -> Policy | None:
    from seawall.config.guard import build_guard

    assert rt.router is not None
    return build_guard(rt.config, rt.router, clock=rt.clock, rng=rt.rng, metrics=rt.metrics,
                       background=rt._background)


#: The policy stack, outermost first (the order, and why each sits where it does: the module
#: docstring). Each entry builds its policy from the runtime being started, or None when it is off;
#: a new policy is one file and one line here. The router is the innermost handler.
STACK: list[tuple[str, Callable[[Runtime], Policy | None]]] = [
    ("observe", _observe),
    ("auth", lambda rt: rt.auth),
    ("lane", _lane),
    ("quota", lambda rt: rt.quota),
    ("admission", _admission),
    ("guard", _guard),
]


class _NoResponseStore:
    """A runtime built without a database (tests that assemble one by hand) keeps no responses."""

    async def put(self, record: StoredResponse) -> None:
        return None

    async def get(self, response_id: str, tenant: str, since_s: float) -> StoredResponse | None:
        return None

    async def delete(self, response_id: str, tenant: str) -> bool:
        return False

    async def purge(self, before_s: float) -> int:
        return 0

    async def close(self) -> None:
        return None


async def _not_started(request: Request) -> Response:
    raise Overloaded("The gateway is starting.", reason="starting", retry_after_s=1.0)


def build_runtime(config: Config, *, clock: Clock | None = None, rng: Rng | None = None,
                  processes: int = 1) -> Runtime:
    """Assemble a runtime; ``ValueError`` if the environment does not complete the config (a secret
    named by the config is unset, say). ``processes``: worker processes of this replica
    (``seawall run --workers N``), which share its quotas when there is no Redis."""
    clock = clock or SystemClock()
    rng = rng or SystemRng()
    metrics = GatewayMetrics()
    store = key_store_for(config)
    keys = KeyRefresher(store, config.criticality_of, clock=clock,
                        interval_s=config.store.refresh_interval_s)
    throttle_cfg = config.auth.failure_throttle
    jwt = None
    if config.auth.jwt is not None:
        from seawall.auth.jwt import JwtVerifier, load_hs256_secret

        settings = config.auth.jwt
        tiers = {t.name: config.criticality_of(t.name) for t in config.tiers}
        jwt = JwtVerifier(settings, tiers, secret=load_hs256_secret(settings, os.environ))
    admin_env = config.server.admin_key_env
    auth = AuthPolicy(
        keys, clock=clock,
        failure_throttle=KeyedGcra(throttle_cfg.per_s, throttle_cfg.burst, throttle_cfg.max_addresses),
        negative_cache=NegativeCache(config.auth.negative_cache_size, config.auth.negative_cache_ttl_s),
        jwt=jwt, admin_key=os.environ.get(admin_env) if admin_env else None,
        on_failure=metrics.auth_failure,
    )
    ledger = None
    if config.store.ledger:
        ledger = Ledger(ledger_sink_for(config), config.store.ledger_spill_path,
                        clock=clock, flush_interval_s=config.store.ledger_flush_interval_s)
    slo = None
    if config.slo.enabled:
        slo = SloRuntime(config, slo_store_for(config), clock=clock, rng=rng, registry=metrics.registry)
    return Runtime(config=config, clock=clock, rng=rng, metrics=metrics, store=store, keys=keys, auth=auth,
                   ledger=ledger, quota=build_quota(config, clock, processes),
                   responses_store=response_store_for(config), slo=slo)


def build_quota(config: Config, clock: Clock, processes: int = 1) -> QuotaPolicy[QuotaService] | None:
    """The quota policy, or None when no quota is configured (then it is not in the stack at all)."""
    q = config.quotas

    def partial(settings: Any) -> dict[str, int | None]:
        return {} if settings is None else dict(settings.model_dump(exclude_unset=True))

    table = QuotaTable(
        {name: {"key": partial(s.key), "tenant": partial(s.tenant)} for name, s in q.tiers.items()},
        {name: {"key": partial(s.key), "tenant": partial(s.tenant)} for name, s in q.tenants.items()},
        {key_id: partial(s) for key_id, s in q.keys.items()},
    )
    if table.empty:
        return None
    redis = None
    if config.shared_redis_url:
        from seawall.edges.stores.redis_quota import RedisQuotaStore

        redis = RedisQuotaStore(config.shared_redis_url, prefix=config.store.redis_prefix)
    service = QuotaService(clock=clock, redis=redis, timeout_s=q.redis_timeout_s, replicas=config.replicas,
                           processes=processes, heartbeat_interval_s=q.heartbeat_interval_s)
    return QuotaPolicy(table, service, clock=clock)


def ledger_recorder(ledger: Ledger, clock: Clock) -> Callable[[Request, Response | None, int, str], None]:
    """The observe policy's ``on_finish``: one ledger record per finished request."""

    def record(request: Request, response: Response | None, status: int, reason: str) -> None:
        p = request.ctx.principal
        usage = response.usage if response is not None else None
        try:
            model: str | None = request.payload.model
        except GatewayError:
            model = None
        ledger.record(LedgerRecord(
            record_id=ledger.next_id(), ts=clock.wall(), request_id=request.id,
            tenant=p.tenant if p else None, key_id=p.key_id if p else None, tier=p.tier if p else None,
            model=model, deployments=",".join(request.ctx.deployments_tried),
            tokens_in=usage.prompt_tokens if usage else 0, tokens_out=usage.completion_tokens if usage else 0,
            latency_s=round(clock.now() - request.received_at, 6), ttft_s=request.ctx.ttft_s,
            status=status, reason=reason, **guard_columns(request.ctx.guard),
        ))

    return record


