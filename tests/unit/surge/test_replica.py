"""The simulator drives the gate through the same events as its asyncio driver: same decisions, step
by step (``AdmissionGate.acquire`` against ``offer``/``expire`` with the simulator's waiter)."""

import asyncio
import heapq
import random

import pytest

from seawall.algorithms.limit import Gradient2Limit
from seawall.algorithms.partition import PartitionedLimiter
from seawall.core.errors import Overloaded
from seawall.core.types import Criticality
from seawall.policies.gate import AdmissionGate, GateSettings, Ticket
from seawall.surge.profiles import gateway_config
from seawall.surge.replica import SimClock, SimRng, Waiter, build_replica
from seawall.testing import FakeClock
from tests.unit.surge.conftest import tiny

SHARES = {Criticality.CRITICAL_PLUS: 0.3, Criticality.CRITICAL: 0.3, Criticality.SHEDDABLE_PLUS: 0.2,
          Criticality.SHEDDABLE: 0.1}


def _parts():
    return (Gradient2Limit(initial_limit=400, min_limit=50, max_limit=5000), PartitionedLimiter(SHARES),
            GateSettings(queue_max_items=12, max_queue_wait_s=0.5))


@pytest.mark.parametrize("seed", range(6))
async def test_sim_gate_decides_like_the_live_gate(seed):
    rng = random.Random(seed)
    fake = FakeClock(0.0)
    limit, limiter, settings = _parts()
    live = AdmissionGate("g", clock=fake, limit=limit, limiter=limiter, settings=settings)
    sclock = SimClock(0.0)
    limit2, limiter2, settings2 = _parts()
    sim = AdmissionGate("g", clock=sclock, limit=limit2, limiter=limiter2, settings=settings2)

    live_tasks = {}
    live_out: dict[int, object] = {}
    sim_out: dict[int, object] = {}
    sim_tickets = {}
    timers: list[tuple[float, int, int]] = []
    waiters = {}

    def notify(token, ticket, exc):
        sim_out[token] = ticket if exc is None else exc.reason
        if ticket is not None:
            sim_tickets[token] = ticket

    async def settle():
        for _ in range(5):
            await asyncio.sleep(0)
        for i, task in list(live_tasks.items()):
            if task.done():
                del live_tasks[i]
                exc = task.exception()
                live_out[i] = task.result() if exc is None else exc.reason

    started_live: list[int] = []
    for i in range(400):
        op = rng.random()
        if op < 0.55:
            crit = Criticality(rng.randrange(4))
            units = rng.choice([20, 40, 80, 150])
            deadline = fake.now() + rng.choice([0.3, 2.0, 30.0])
            live_tasks[i] = asyncio.ensure_future(live.acquire(crit, units, deadline))
            waiter = Waiter(notify, i)
            try:
                offered = sim.offer(crit, units, deadline, waiter)
            except Overloaded as exc:
                sim_out[i] = exc.reason
            else:
                if isinstance(offered, Ticket):
                    sim_out[i] = offered
                    sim_tickets[i] = offered
                else:
                    assert offered.waiter is waiter
                    waiters[i] = (waiter, crit, units)
                    heapq.heappush(timers, (offered.deadline_s, i, i))
        elif op < 0.9:
            candidates = [k for k, v in live_out.items() if not isinstance(v, str) and k not in started_live]
            if candidates:
                k = rng.choice(candidates)
                started_live.append(k)
                rtt, dropped = rng.choice([(0.2, False), (0.25, False), (None, True), (0.3, False)])
                live.release(live_out[k], rtt_s=rtt, dropped=dropped)
                sim.release(sim_tickets[k], rtt_s=rtt, dropped=dropped)
        else:
            dt = rng.choice([0.01, 0.1, 0.4, 1.0])
            fake.advance(dt)
            sclock.t = fake.now()
            while timers and timers[0][0] <= sclock.t:
                _, _, k = heapq.heappop(timers)
                waiter, crit, units = waiters[k]
                rejection = sim.expire(waiter, crit, units)
                if rejection is not None:
                    notify(k, None, rejection)
        await settle()
        assert {k: (v if isinstance(v, str) else "started") for k, v in live_out.items()} == \
               {k: (v if isinstance(v, str) else "started") for k, v in sim_out.items()}, f"step {i}"
        assert limiter.inflight == pytest.approx(limiter2.inflight)
        assert limit.limit == limit2.limit
    for task in live_tasks.values():
        task.cancel()
    assert len({v for v in live_out.values() if isinstance(v, str)}) >= 2  # several kinds of refusal seen


def test_replicas_are_built_from_the_config_like_the_gateway():
    scenario = tiny(gateway={"config": {"admission": {"algorithm": "vegas", "max_queue_wait_s": 0.25},
                                        "resilience": {"max_attempts": 2, "breaker": {"open_s": 7}}}})
    config = gateway_config(scenario, "seawall")
    replica = build_replica(0, config, {"chat": [("a", 1.0, 0)]}, clock=SimClock(), rng=SimRng(random.random))
    gate = replica.gates["chat"]
    assert type(gate.limit).__name__ == "VegasLimit"
    assert gate.settings.max_queue_wait_s == 0.25
    assert replica.router.retry.max_attempts == 2
    assert replica.deployments["a"].breaker.open_s == 7
    naive = build_replica(0, gateway_config(scenario, "naive"), {"chat": [("a", 1.0, 0)]}, clock=SimClock(),
                          rng=SimRng(random.random))
    assert naive.admission is None and naive.gates == {}
    assert naive.router.retry.max_attempts == 1
