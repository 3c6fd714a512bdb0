"""Router on a fake clock with scripted deployments: failover, breakers, retry budget."""

import pytest

from seawall.algorithms.breaker import CircuitBreaker
from seawall.algorithms.ejection import EjectionGuard
from seawall.algorithms.retry_budget import RetryBudget
from seawall.core.errors import (
    GatewayError,
    InvalidRequest,
    ModelNotFound,
    Overloaded,
    PermissionDenied,
    UpstreamError,
    UpstreamTimeout,
)
from seawall.core.types import Criticality, Operation, Principal, Response
from seawall.policies.deployment import DeploymentHandle
from seawall.policies.route import ModelGroup, RetrySettings, Router
from seawall.testing import FakeClock, SeededRng, make_request

P = Principal("k", "acme", "api", Criticality.CRITICAL)


class Script:
    """A deployment that answers from a list of outcomes ("ok", "500", "429", "timeout", "400")."""

    def __init__(self, name, outcomes):
        self.name = name
        self.outcomes = list(outcomes)
        self.calls = 0

    async def __call__(self, request):
        self.calls += 1
        kind = self.outcomes.pop(0) if self.outcomes else "ok"
        if kind == "ok":
            return Response(200, self.name.encode(), deployment=self.name)
        if kind == "500":
            raise UpstreamError("boom", upstream_status=500)
        if kind == "429":
            err = Overloaded("slow down", upstream_status=429, retry_after_s=1)
            err.headroom = 0.0  # type: ignore[attr-defined]
            raise err
        if kind == "timeout":
            raise UpstreamTimeout("slow", error_kind="timeout")
        if kind == "400":
            raise InvalidRequest("bad", upstream_status=400)
        raise AssertionError(kind)


def router(clock, scripts, *, budget=None, max_attempts=3, balancing="weighted", priorities=None,
           breaker_kw=None, models=None):
    deps = [DeploymentHandle(s.name, s, CircuitBreaker(**(breaker_kw or {})), clock,
                             priority=(priorities or {}).get(s.name, i))
            for i, s in enumerate(scripts)]
    groups = {"m": ModelGroup("m", Operation.CHAT, deps, balancing)}
    if models:
        groups.update(models)
    return Router(groups, clock=clock, rng=SeededRng(1),
                  budget=budget or RetryBudget(ratio=0.2, min_per_s=10, window_s=10),
                  ejection=EjectionGuard(0.5), retry=RetrySettings(max_attempts, 0.01, 0.1)), deps


def req(clock, principal=P, headers=None, body=None):
    kw = {"principal": principal, "now_s": clock.now(), "headers": headers or {}}
    if body is not None:
        kw["body"] = body
    return make_request(**kw)


async def test_fails_over_on_5xx_timeout_and_429():
    for first in ("500", "timeout", "429"):
        clock = FakeClock()
        a, b = Script("a", [first]), Script("b", [])
        r, _ = router(clock, [a, b])
        request = req(clock)
        response = await r(request)
        assert response.body == b"b" and request.ctx.deployments_tried == ["a", "b"]
        assert request.ctx.attempts == 2


async def test_client_errors_are_not_retried():
    clock = FakeClock()
    a, b = Script("a", ["400"]), Script("b", [])
    r, _ = router(clock, [a, b])
    with pytest.raises(InvalidRequest):
        await r(req(clock))
    assert b.calls == 0


async def test_429_never_opens_the_breaker_but_5xx_does():
    clock = FakeClock()
    a = Script("a", ["429"] * 50)
    r, deps = router(clock, [a, Script("b", [])], breaker_kw={"consecutive_failures_to_open": 3})
    for _ in range(50):
        await r(req(clock))
    assert not deps[0].is_open(clock.now()) and deps[0].headroom == 0.0
    c = Script("c", ["500"] * 3)
    r2, deps2 = router(clock, [c, Script("d", [])], breaker_kw={"consecutive_failures_to_open": 3})
    for _ in range(3):
        await r2(req(clock))
    assert deps2[0].is_open(clock.now())
    calls = c.calls
    assert (await r2(req(clock))).body == b"d"
    assert c.calls == calls, "an open breaker is skipped without sending"


async def test_open_breaker_half_opens_and_recovers():
    clock = FakeClock()
    a = Script("a", ["500"] * 3)
    r, deps = router(clock, [a, Script("b", [])],
                     breaker_kw={"consecutive_failures_to_open": 3, "open_s": 5,
                                 "probe_successes_to_close": 1})
    for _ in range(3):
        await r(req(clock))
    assert deps[0].is_open(clock.now())
    clock.advance(6)
    assert (await r(req(clock))).body == b"a"  # the probe goes to the primary and succeeds
    assert deps[0].breaker.state(clock.now()).value == "closed"


async def test_retry_budget_bounds_amplification_in_an_outage():
    clock = FakeClock()
    budget = RetryBudget(ratio=0.1, min_per_s=0.1, window_s=10)
    a, b = Script("a", ["500"] * 10_000), Script("b", ["500"] * 10_000)
    r, _ = router(clock, [a, b], budget=budget, breaker_kw={"consecutive_failures_to_open": 10**6,
                                                           "min_requests": 10**6})
    n = 500
    for _ in range(n):
        clock.advance(0.01)
        with pytest.raises(GatewayError):
            await r(req(clock))
    attempts = a.calls + b.calls
    assert attempts / n <= 1.2, attempts / n
    assert budget.amplification(clock.now()) <= 1.2


async def test_client_retries_get_no_gateway_retry_when_budget_is_tight():
    clock = FakeClock()
    budget = RetryBudget(ratio=0.2, min_per_s=0, window_s=10)
    r, _ = router(clock, [Script("a", ["500"] * 100), Script("b", [])], budget=budget,
                  breaker_kw={"consecutive_failures_to_open": 10**6, "min_requests": 10**6})
    for _ in range(15):  # deposits 3 retries' worth; each request below spends one
        budget.on_request(clock.now())
    await r(req(clock))  # plain requests may retry...
    await r(req(clock))
    assert 1 <= budget.available(clock.now()) and budget.is_tight(clock.now())
    with pytest.raises(UpstreamError):  # ...but a client's own retry gets none once the budget is tight
        await r(req(clock, headers={"x-stainless-retry-count": "2"}))


async def test_priority_tiers_prefer_primary_then_fall_back():
    clock = FakeClock()
    primary, fallback = Script("primary", []), Script("fallback", [])
    r, _ = router(clock, [primary, fallback], balancing="latency", priorities={"primary": 0, "fallback": 1})
    for _ in range(20):
        await r(req(clock))
    assert primary.calls == 20 and fallback.calls == 0


async def test_deadline_stops_failover():
    clock = FakeClock()

    class Slow(Script):
        async def __call__(self, request):
            clock.advance(100)
            return await super().__call__(request)

    a, b = Slow("a", ["500"]), Script("b", [])
    r, _ = router(clock, [a, b])
    with pytest.raises(UpstreamError):
        await r(make_request(principal=P, now_s=clock.now(), timeout_s=50))
    assert b.calls == 0


async def test_model_checks():
    clock = FakeClock()
    embed = ModelGroup("e", Operation.EMBEDDINGS, [])
    r, _ = router(clock, [Script("a", [])], models={"e": embed})
    with pytest.raises(ModelNotFound):
        await r(req(clock, body=b'{"model":"zzz","messages":[{"role":"user","content":"x"}]}'))
    narrow = Principal("k", "t", "api", Criticality.CRITICAL, frozenset({"e"}))
    with pytest.raises(PermissionDenied):
        await r(req(clock, principal=narrow))
    with pytest.raises(InvalidRequest) as exc:
        await r(req(clock, body=b'{"model":"e","messages":[{"role":"user","content":"x"}]}'))
    assert exc.value.code == "wrong_model_kind"


def test_a_deployment_candidate_is_reused_only_while_nothing_it_holds_changed():
    clock = FakeClock()
    dep = DeploymentHandle("a", Script("a", []), CircuitBreaker(), clock)
    first = dep.candidate(True, clock.now())
    assert dep.candidate(True, clock.now()) is first  # nothing changed: the same snapshot
    dep.inflight_units += 5.0
    busy = dep.candidate(True, clock.now())
    assert busy.inflight_units == 5.0 and first.inflight_units == 0.0  # snapshots never change
    assert not dep.candidate(False, clock.now()).healthy
    dep.cooldown_until_s = clock.now() + 1.0
    assert not dep.candidate(True, clock.now()).healthy  # cooling after a 429
    dep.headroom = 0.05
    assert dep.candidate(True, clock.now()).headroom == 0.05


# -- pacing from rate-limit headers (algorithms/pacing.py) ---------------------------------------

def _budget(remaining, reset_s=60.0, retry_after_s=None):
    from seawall.algorithms.pacing import Budget, RateLimitReport

    return RateLimitReport((Budget("requests", 60.0, remaining, reset_s),), retry_after_s)


async def test_a_deployment_without_budget_is_skipped_without_a_send_and_the_router_fails_over():
    clock = FakeClock()
    a, b = Script("a", []), Script("b", [])
    r, deps = router(clock, [a, b])
    heard = []
    deps[0].on_budget = heard.append
    deps[0].observe_rate_limits(clock.now(), _budget(0.0))  # a's provider: nothing left for a second
    assert heard == [clock.now()]  # the group's limit hears that this upstream states a budget
    request = req(clock)
    response = await r(request)
    assert response.body == b"b" and a.calls == 0
    assert request.ctx.attempts == 1  # the paced deployment cost no attempt
    assert not deps[0].candidate(True, clock.now()).healthy  # the balancer prefers others meanwhile
    clock.advance(1.0)
    assert deps[0].candidate(True, clock.now()).healthy


async def test_when_no_deployment_has_budget_the_error_is_the_429_it_avoided():
    from seawall.algorithms.outcome import Outcome
    from seawall.policies.deployment import Paced, outcome_of

    clock = FakeClock()
    a = Script("a", [])
    r, deps = router(clock, [a])
    deps[0].observe_rate_limits(clock.now(), _budget(0.0, reset_s=120.0))  # 0.5 requests a second
    with pytest.raises(Paced) as info:
        await r(req(clock))
    assert a.calls == 0
    assert info.value.retry_after_s == pytest.approx(2.0)
    assert outcome_of(info.value) is Outcome.OVERLOADED  # admission: a drop, and the request waits


async def test_sends_are_charged_and_a_429s_retry_after_holds():
    clock = FakeClock()
    a = Script("a", ["ok", "ok", "429"])
    r, deps = router(clock, [a], max_attempts=1)
    deps[0].observe_rate_limits(clock.now(), _budget(2.0))
    await r(req(clock))
    await r(req(clock))
    with pytest.raises(GatewayError):  # the budget the headers stated is spent: paced, not sent
        await r(req(clock))
    assert a.calls == 2
    clock.advance(1.1)  # the refill: (60 - 2) requests over 60 s
    with pytest.raises(Overloaded):
        await r(req(clock))  # sent; the provider said 429 anyway (the script)
    assert a.calls == 3
    deps[0].observe_rate_limits(clock.now(), _budget(50.0, retry_after_s=3.0), refused=True, units=10.0)
    assert deps[0].paced_for_s(clock.now(), 10.0) == pytest.approx(3.0)  # retry-after holds every send


def test_a_deployment_without_a_pacer_ignores_the_headers():
    clock = FakeClock()
    dep = DeploymentHandle("a", Script("a", []), CircuitBreaker(), clock, pacer=None)
    dep.observe_rate_limits(clock.now(), _budget(0.0))
    assert dep.paced_for_s(clock.now(), 100.0) == 0.0
