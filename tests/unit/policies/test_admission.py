"""Admission gate and policy on a fake clock: who starts, who waits, who is refused, and why."""

import asyncio

import pytest

from seawall.algorithms.breaker import CircuitBreaker
from seawall.algorithms.ejection import EjectionGuard
from seawall.algorithms.limit import Gradient2Limit
from seawall.algorithms.partition import PartitionedLimiter
from seawall.algorithms.retry_budget import RetryBudget
from seawall.core.compose import compose
from seawall.core.errors import Overloaded
from seawall.core.types import Criticality, Operation, Principal, Response
from seawall.policies.admission import AdmissionPolicy, effective_criticality
from seawall.policies.deployment import DeploymentHandle
from seawall.policies.gate import AdmissionGate, GateSettings, Ticket
from seawall.policies.route import ModelGroup, Router
from seawall.testing import FakeClock, SeededRng, make_request

C = Criticality
SHARES = {C.CRITICAL_PLUS: 0.3, C.CRITICAL: 0.3, C.SHEDDABLE_PLUS: 0.2, C.SHEDDABLE: 0.1}


class FixedLimit:
    def __init__(self, limit: float) -> None:
        self._limit = limit
        self.samples: list[tuple[float, bool]] = []

    @property
    def limit(self) -> float:
        return self._limit

    def on_sample(self, now_s, rtt_s, inflight, dropped, units=1.0, started_s=None):
        self.samples.append((rtt_s, dropped))
        return self._limit


def gate(clock, limit=100.0, **kw) -> AdmissionGate:
    return AdmissionGate("g", clock=clock, limit=FixedLimit(limit), limiter=PartitionedLimiter(SHARES),
                         settings=GateSettings(**kw))


async def test_starts_at_once_while_it_fits():
    clock = FakeClock()
    g = gate(clock)
    tickets = [await g.acquire(C.SHEDDABLE, 30, clock.now() + 10) for _ in range(3)]
    assert all(t.queued_s == 0 for t in tickets) and g.limiter.inflight == 90


async def test_critical_reclaims_borrowed_capacity_first_without_exceeding_the_limit():
    clock = FakeClock()
    g = gate(clock, max_queue_wait_s=5)
    held = [await g.acquire(C.SHEDDABLE, 25, clock.now() + 60) for _ in range(4)]  # borrowed all 100
    later_sheddable = asyncio.ensure_future(g.acquire(C.SHEDDABLE, 25, clock.now() + 60))
    await asyncio.sleep(0)
    crit = asyncio.ensure_future(g.acquire(C.CRITICAL, 25, clock.now() + 60))
    await asyncio.sleep(0)
    assert not crit.done() and g.limiter.inflight == 100  # never above the limit
    clock.advance(0.05)
    g.release(held[0], rtt_s=0.2, dropped=False)
    ticket = await crit  # the first capacity that frees goes to the critical request
    assert ticket.queued_s == pytest.approx(0.05) and not later_sheddable.done()
    g.release(held[1], rtt_s=0.2, dropped=False)
    assert (await later_sheddable).criticality is C.SHEDDABLE


async def test_overshoot_mode_reclaims_at_once():
    clock = FakeClock()
    g = gate(clock, overshoot=True)
    for _ in range(4):
        await g.acquire(C.SHEDDABLE, 25, clock.now() + 60)
    crit = await g.acquire(C.CRITICAL, 25, clock.now() + 60)  # its own reserve, at once
    assert crit.queued_s == 0 and g.limiter.inflight == 125


async def test_queue_releases_in_criticality_order():
    clock = FakeClock()
    g = gate(clock, max_queue_wait_s=5)
    first = await g.acquire(C.CRITICAL_PLUS, 100, clock.now() + 60)
    order = []

    async def wait(crit):
        t = await g.acquire(crit, 50, clock.now() + 60)
        order.append(crit)
        g.release(t, rtt_s=0.1, dropped=False)

    tasks = [asyncio.ensure_future(wait(c)) for c in (C.SHEDDABLE, C.SHEDDABLE_PLUS, C.CRITICAL)]
    await asyncio.sleep(0)
    g.release(first, rtt_s=0.1, dropped=False)
    await asyncio.gather(*tasks)
    assert order == [C.CRITICAL, C.SHEDDABLE_PLUS, C.SHEDDABLE]


async def test_deadline_that_cannot_be_met_is_refused_at_once():
    clock = FakeClock()
    g = gate(clock, max_queue_wait_s=5, min_service_s=1.0)
    await g.acquire(C.CRITICAL_PLUS, 100, clock.now() + 60)
    with pytest.raises(Overloaded) as exc:
        await g.acquire(C.SHEDDABLE, 20, clock.now() + 0.5)  # over its own reserve (10)
    assert exc.value.reason == "deadline"
    assert 0.25 <= exc.value.retry_after_s <= 60


async def test_waiting_is_bounded_on_the_injected_clock():
    clock = FakeClock()
    g = gate(clock, max_queue_wait_s=2.0)
    await g.acquire(C.CRITICAL_PLUS, 100, clock.now() + 60)
    waiter = asyncio.ensure_future(g.acquire(C.SHEDDABLE, 20, clock.now() + 60))
    await asyncio.sleep(0)
    clock.advance(1.0)
    await asyncio.sleep(0)
    assert not waiter.done()
    clock.advance(1.1)
    with pytest.raises(Overloaded) as exc:
        await waiter
    assert exc.value.reason == "queue_timeout" and len(g.queue) == 0


async def test_full_queue_displaces_lower_criticality():
    clock = FakeClock()
    g = gate(clock, queue_max_items=2, max_queue_wait_s=5, queue_critical_reserve=0.0)
    await g.acquire(C.CRITICAL_PLUS, 100, clock.now() + 60)
    low = [asyncio.ensure_future(g.acquire(C.SHEDDABLE, 20, clock.now() + 60)) for _ in range(2)]
    await asyncio.sleep(0)
    high = asyncio.ensure_future(g.acquire(C.CRITICAL, 40, clock.now() + 60))
    await asyncio.sleep(0)
    with pytest.raises(Overloaded) as exc:
        await low[1]
    assert exc.value.reason == "displaced" and not high.done() and not low[0].done()
    with pytest.raises(Overloaded):  # a sheddable arrival finds nothing lower to displace
        await g.acquire(C.SHEDDABLE, 20, clock.now() + 60)
    for t in (low[0], high):
        t.cancel()


async def test_reserved_queue_room_refuses_sheddable_at_once_instead_of_displacing_later():
    clock = FakeClock()
    g = gate(clock, queue_max_items=4, max_queue_wait_s=5)  # default reserve: a quarter for critical
    await g.acquire(C.CRITICAL_PLUS, 100, clock.now() + 60)
    low = [asyncio.ensure_future(g.acquire(C.SHEDDABLE, 20, clock.now() + 60)) for _ in range(3)]
    await asyncio.sleep(0)
    with pytest.raises(Overloaded):  # the fourth place is critical's
        await g.acquire(C.SHEDDABLE, 20, clock.now() + 60)
    high = asyncio.ensure_future(g.acquire(C.CRITICAL, 40, clock.now() + 60))
    await asyncio.sleep(0)
    assert not any(t.done() for t in (*low, high)) and len(g.queue) == 4  # nobody was displaced
    for t in (*low, high):
        t.cancel()


async def test_cancelled_waiter_leaks_no_capacity():
    clock = FakeClock()
    g = gate(clock, max_queue_wait_s=5)
    first = await g.acquire(C.CRITICAL_PLUS, 100, clock.now() + 60)
    waiter = asyncio.ensure_future(g.acquire(C.SHEDDABLE, 20, clock.now() + 60))
    await asyncio.sleep(0)
    waiter.cancel()
    await asyncio.sleep(0)
    g.release(first, rtt_s=0.1, dropped=False)
    assert g.limiter.inflight == 0 and len(g.queue) == 0


def test_service_tier_lowers_never_raises():
    assert effective_criticality(C.CRITICAL_PLUS, "flex") is C.SHEDDABLE
    assert effective_criticality(C.CRITICAL_PLUS, "default") is C.CRITICAL
    assert effective_criticality(C.SHEDDABLE, "priority") is C.SHEDDABLE
    assert effective_criticality(C.SHEDDABLE_PLUS, None) is C.SHEDDABLE_PLUS


def _policy(clock, gate_, *, lag=0.0, send=None):
    async def ok(request):
        return Response(200, b'{"id":"x"}', deployment="d")

    dep = DeploymentHandle("d", send or ok, CircuitBreaker(), clock)
    router = Router({"m": ModelGroup("m", Operation.CHAT, [dep])}, clock=clock, rng=SeededRng(0),
                    budget=RetryBudget(), ejection=EjectionGuard())
    shed = []
    policy = AdmissionPolicy({"m": gate_}, router, clock=clock, loop_lag_s=lambda: lag,
                             lag_shed_s={C.SHEDDABLE: 0.05, C.CRITICAL: 0.5},
                             on_shed=lambda g, c, r: shed.append((c, r)))
    return compose([policy], router), shed


async def test_loop_lag_sheds_least_critical_before_parsing():
    clock = FakeClock()
    handler, shed = _policy(clock, gate(clock), lag=0.2)
    bad_body = b"{this is not even json"
    with pytest.raises(Overloaded) as exc:
        await handler(make_request(bad_body, principal=Principal("k", "t", "free", C.SHEDDABLE),
                                   now_s=clock.now()))
    assert exc.value.reason == "gateway_overload" and shed == [("sheddable", "gateway_overload")]
    ok = await handler(make_request(principal=Principal("k", "t", "ent", C.CRITICAL_PLUS), now_s=clock.now()))
    assert ok.status == 200


async def test_upstream_429_feeds_the_limit_as_a_drop():
    clock = FakeClock()
    limit = Gradient2Limit(initial_limit=1000, min_limit=10, max_limit=10_000, window_samples=1, window_s=0.0)
    g = AdmissionGate("m", clock=clock, limit=limit, limiter=PartitionedLimiter(SHARES))

    async def busy(request):
        clock.advance(0.2)
        raise Overloaded("upstream busy", upstream_status=429)

    handler, _ = _policy(clock, g, send=busy)
    principal = Principal("k", "t", "ent", C.CRITICAL_PLUS)
    for _ in range(5):
        with pytest.raises(Overloaded):
            await handler(make_request(principal=principal, now_s=clock.now()))
        clock.advance(1.0)
    assert limit.limit < 1000 and g.limiter.inflight == 0


async def test_the_body_keeps_the_upstreams_service_tier_and_a_header_says_what_seawall_used():
    """Streams pass the upstream's service_tier through; a whole body does the same (they once
    disagreed: the body was rewritten with the gateway's value)."""
    clock = FakeClock()

    async def upstream(request):
        return Response(200, b'{"id":"x","service_tier":"default"}', deployment="d")

    handler, _ = _policy(clock, gate(clock), send=upstream)
    body = b'{"model":"m","messages":[{"role":"user","content":"x"}],"service_tier":"flex"}'
    response = await handler(make_request(body, principal=Principal("k", "t", "ent", C.CRITICAL_PLUS),
                                          now_s=clock.now()))
    assert response.body == b'{"id":"x","service_tier":"default"}'
    assert ("x-seawall-criticality", "sheddable") in response.headers


async def test_no_latency_samples_while_the_gateway_itself_lags():
    clock = FakeClock()
    g = gate(clock)
    handler, _ = _policy(clock, g, lag=0.03)  # above the sampling bound, below critical shedding
    principal = Principal("k", "t", "ent", C.CRITICAL_PLUS)
    await handler(make_request(principal=principal, now_s=clock.now()))
    assert g.limit.samples == []  # type: ignore[attr-defined]
    handler, _ = _policy(clock, g, lag=0.0)
    await handler(make_request(principal=principal, now_s=clock.now()))
    assert len(g.limit.samples) == 1  # type: ignore[attr-defined]


async def _busy_with(g: AdmissionGate, clock: FakeClock, crit: C, seconds: float) -> None:
    """Keep the gate full of ``crit`` work, 10 units finishing every 0.1 s (100 units/s drained)."""
    held = [await g.acquire(crit, 10, clock.now() + 60) for _ in range(10)]
    end = clock.now() + seconds
    while clock.now() < end:
        clock.advance(0.1)
        g.release(held.pop(0), rtt_s=None, dropped=False)
        held.append(await g.acquire(crit, 10, clock.now() + 60))


async def test_the_wait_estimate_counts_capacity_that_more_critical_work_takes_first():
    clock = FakeClock()
    g = gate(clock, max_queue_wait_s=1.0)
    await _busy_with(g, clock, C.CRITICAL, 5.0)  # critical work starts as fast as the gate drains
    now = clock.now()
    assert g.drain.units_per_s(now) == pytest.approx(100, rel=0.2)
    # For critical work the line is short; free work never gets the capacity: a long wait.
    assert g.estimated_wait_s(C.CRITICAL, 10, now) == pytest.approx(0.1, rel=0.3)
    assert g.estimated_wait_s(C.SHEDDABLE, 10, now) > 2.0
    queued = asyncio.ensure_future(g.acquire(C.SHEDDABLE, 10, now + 60))  # one may wait: the line is empty
    await asyncio.sleep(0)
    with pytest.raises(Overloaded) as exc:  # the next is refused at once, not after a second in line
        await g.acquire(C.SHEDDABLE, 10, now + 60)
    assert exc.value.reason == "overload" and not queued.done()
    queued.cancel()


async def test_without_more_critical_arrivals_the_estimate_is_the_plain_drain():
    clock = FakeClock()
    g = gate(clock, max_queue_wait_s=1.0)
    await _busy_with(g, clock, C.SHEDDABLE, 5.0)
    now = clock.now()
    assert g.estimated_wait_s(C.SHEDDABLE, 10, now) == pytest.approx(0.1, rel=0.3)


async def test_critical_tiers_wait_longer_than_sheddable_ones():
    clock = FakeClock()
    g = gate(clock, max_queue_wait_s=0.5, critical_max_queue_wait_s=5.0)
    held = await g.acquire(C.CRITICAL, 100, clock.now() + 60)  # the whole limit
    free = asyncio.ensure_future(g.acquire(C.SHEDDABLE, 10, clock.now() + 60))
    paying = asyncio.ensure_future(g.acquire(C.CRITICAL, 10, clock.now() + 60))
    await asyncio.sleep(0)
    clock.advance(1.0)
    for _ in range(5):
        await asyncio.sleep(0)
    with pytest.raises(Overloaded) as refused:
        await free
    assert refused.value.reason == "queue_timeout"
    assert not paying.done()  # still within its 5 s
    g.release(held, rtt_s=0.2, dropped=False)
    assert (await paying).queued_s == pytest.approx(1.0)


async def test_a_requeued_request_waits_for_the_next_release_however_the_limit_reads():
    """After an upstream 429 the limit may still read as room; the request waits for work to end."""
    clock = FakeClock()
    g = gate(clock, critical_max_queue_wait_s=5.0)
    running = await g.acquire(C.CRITICAL, 10, clock.now() + 60)
    retry = asyncio.ensure_future(g.acquire(C.CRITICAL, 10, clock.now() + 60, requeued=True))
    await asyncio.sleep(0)
    assert not retry.done() and g.limiter.inflight == 10  # 90 units free, yet it waits
    g.release(running, rtt_s=0.2, dropped=False)
    second = await retry
    assert second.criticality is C.CRITICAL
    g.release(second, rtt_s=0.2, dropped=False)
    alone = await g.acquire(C.CRITICAL, 10, clock.now() + 60, requeued=True)  # nothing left to wait for
    assert alone.queued_s == 0


async def test_trunk_reservation_keeps_the_paying_peak_free_of_sheddable_work():
    clock = FakeClock()
    g = gate(clock, protect_window_s=30.0)
    paying = [await g.acquire(C.CRITICAL, 10, clock.now() + 60) for _ in range(4)]  # a peak of 40
    for ticket in paying:
        g.release(ticket, rtt_s=0.2, dropped=False)
    assert g.protected_units(C.SHEDDABLE, clock.now()) == pytest.approx(40)
    assert g.protected_units(C.CRITICAL, clock.now()) == 0.0  # paying tiers reserve nothing among themselves
    offered = [g.offer(C.SHEDDABLE, 10, clock.now() + 60, asyncio.get_running_loop().create_future)
               for _ in range(10)]
    started = [o for o in offered if isinstance(o, Ticket)]
    assert len(started) == 6  # 100 units less the 40 the paying tiers needed; the rest wait
    for o in offered[6:]:
        o.waiter.cancel()
    await g.acquire(C.CRITICAL, 40, clock.now() + 60)  # and they find them free at once


async def test_one_retry_plan_per_client_request_across_requeues():
    """The admission requeue after a 429 and the router's own retries share one plan: an upstream
    that refuses everything sees at most ``max_attempts`` sends plus one per requeue (each paid from
    the retry budget) per client request, not 3 per round (up to 9)."""
    clock = FakeClock()
    g = gate(clock, critical_max_queue_wait_s=5.0)
    sends = []

    async def refuse(request):
        sends.append(request.id)
        raise Overloaded("upstream busy", upstream_status=429, retry_after_s=0.01)

    handler, _ = _policy(clock, g, send=refuse)
    principal = Principal("k", "t", "ent", C.CRITICAL_PLUS)
    for _ in range(5):
        before = len(sends)
        request = make_request(principal=principal, now_s=clock.now())
        with pytest.raises(Overloaded):
            await handler(request)
        assert request.ctx.attempts == len(sends) - before <= 3 + 2  # max_attempts + max_requeues
        clock.advance(2.0)
    assert g.limiter.inflight == 0


async def test_paying_work_waits_for_what_the_flood_only_borrowed_instead_of_an_estimate_refusal():
    """Issue 11 item 4: a paying request is not shed while the capacity it could use is held by
    sheddable work beyond its reserved shares; it waits for that capacity (bounded by its queue
    deadline). Work beyond what the flood may keep is still refused on the wait estimate."""
    clock = FakeClock()
    g = gate(clock, max_queue_wait_s=0.5, critical_max_queue_wait_s=0.01)  # any line is "too long"
    await _busy_with(g, clock, C.SHEDDABLE, 2.0)  # the flood holds all 100 units; its share is 10
    now = clock.now()
    waiting = [asyncio.ensure_future(g.acquire(C.CRITICAL, 20, now + 60)) for _ in range(4)]  # 80 <= 90
    await asyncio.sleep(0)
    assert g.estimated_wait_s(C.CRITICAL, 20, now) > 0.01
    assert not any(w.done() for w in waiting)  # all queued: the flood only borrowed what they need
    beyond = asyncio.ensure_future(g.acquire(C.CRITICAL, 20, now + 60))  # 100 > 100 - 10
    await asyncio.sleep(0)
    assert beyond.done() and isinstance(beyond.exception(), Overloaded)
    assert beyond.exception().reason == "overload"  # type: ignore[union-attr]
    for w in waiting:
        w.cancel()
