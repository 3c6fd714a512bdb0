"""The quota service on a fake clock and a fake store that mirrors the Redis script with the
reference algorithm (LocalQuota): leases decide far from a limit without calling the store, near it
every request is asked about, a known exhausted window is refused in-process, several replicas on one
store hold one quota; and fail static: local decisions at 1/N seeded from the last snapshot, the
breaker stops the calls, recovery by itself, day usage during an outage charged when the store is back."""

import asyncio

import pytest

from seawall.algorithms.quota import DAY_S, Dimension, LocalQuota, QuotaLimits, QuotaScope
from seawall.algorithms.quota_lease import ScopeState
from seawall.edges.quota import Decided, QuotaService
from seawall.edges.stores.redis_quota import Take
from seawall.testing import FakeClock

SCOPES = (QuotaScope("key", "k1", "acme", QuotaLimits(requests_per_min=60, concurrent_requests=100)),)
RATE = (QuotaScope("key", "k1", "acme", QuotaLimits(requests_per_min=600)),
        QuotaScope("tenant", "acme", "acme", QuotaLimits(requests_per_min=10_000)))


class FakeStore:
    """Stands in for RedisQuotaStore: what the script does, step for step, on a LocalQuota, on the
    shared (wall) clock; switchable faults."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.quota = LocalQuota()
        self.down = False
        self.hang = False
        self.calls = 0
        self.released: list[str] = []
        self.replicas = 1

    async def _fault(self) -> None:
        self.calls += 1
        if self.hang:
            await asyncio.Event().wait()
        if self.down:
            raise ConnectionError("connection refused")

    def _state(self, scope, granted=(0, 0, 0), slots=-1) -> ScopeState:
        t = self.clock.wall()
        rtat, ttat, day, used = self.quota.peek(scope, t, t)
        return ScopeState(rtat, ttat, day, used, granted, slots, self.quota.inflight(scope))

    async def take(self, scopes, tokens, lease_id="", lease_ttl_s=0.0, *, replicas=1, wants=None, owner="",
                   now_s=0.0):
        await self._fault()
        t = self.clock.wall()
        decision = self.quota.acquire(scopes, tokens, t, t)
        states = []
        for i, s in enumerate(scopes):
            granted, slots = (0, 0, 0), -1
            if decision.allowed and wants is not None:
                granted = self.quota.grant(s, wants[i][:3], replicas, t, t)
                slots = self.quota.hold(s, owner, wants[i][3], wants[i][4], replicas, grow_only=True)
            states.append(self._state(s, granted, slots))
        return Take(decision, t, states)

    async def settle(self, scopes, tokens_delta, lease_id, acquired_s, now_s=0.0):
        await self._fault()
        self.released.append(lease_id)
        t = self.clock.wall()
        self.quota.settle(scopes, tokens_delta, t, t, acquired_s)

    async def sync(self, batches, replicas, owner="", now_s=0.0):
        await self._fault()
        t = self.clock.wall()
        out = []
        for batch in batches:
            states = []
            for op in batch:
                self.quota.adjust(op.scope, *op.adjust, op.day, t, t)
                granted = self.quota.grant(op.scope, op.want, replicas, t, t)
                slots = self.quota.hold(op.scope, owner, op.slots, op.floor, replicas)
                states.append(self._state(op.scope, granted, slots))
            out.append(Take(None, t, states))
        return out

    async def heartbeat(self, replica_id, ttl_s):
        await self._fault()
        return self.replicas

    async def leave(self, replica_id):
        pass

    async def close(self):
        pass

    def remaining(self, scope: QuotaScope) -> int:
        t = self.clock.wall()
        rtat = self.quota.peek(scope, t, t)[0]
        assert scope.limits.requests_per_min is not None
        return round(scope.limits.requests_per_min - (rtat - t) * scope.limits.requests_per_min / 60)


def service(clock, store, **kw) -> QuotaService:
    return QuotaService(clock=clock, redis=store, timeout_s=0.02, **kw)  # type: ignore[arg-type]


async def admit(svc: QuotaService, scopes=RATE, tokens: int = 0, actual: int | None = None) -> bool:
    ticket = await svc.acquire(scopes, tokens, 30.0)
    await svc.settle(ticket, actual)
    return ticket.decision.allowed


# -- leases ------------------------------------------------------------------------------------
async def test_far_from_the_limit_requests_are_decided_from_leases_without_the_store():
    clock = FakeClock()
    store = FakeStore(clock)
    svc = service(clock, store)
    for _ in range(20):  # the first ones ask the store; each answer brings a bigger lease
        assert await admit(svc)
        clock.advance(0.001)
    assert await svc.sync()  # the interval's demand sizes the next top-up
    calls = store.calls
    for _ in range(20):
        assert await admit(svc)
        clock.advance(0.001)
    assert store.calls == calls  # nothing waited on the store
    assert svc.counts["lease_decisions"] >= 20 and svc.counts["remote_decisions"] >= 1
    # every admitted request was charged on the shared counters, leased cells included
    assert store.remaining(RATE[0]) <= 600 - 40


async def test_several_replicas_hold_one_quota_and_go_to_the_store_near_the_limit():
    clock = FakeClock()
    store = FakeStore(clock)
    store.replicas = 3
    fleet = [service(clock, store) for _ in range(3)]
    for svc in fleet:
        await svc.beat()
    admitted = 0
    for step in range(3000):  # 3 s at 1,000 requests/s over three replicas, 600/min shared
        admitted += await admit(fleet[step % 3])
        clock.advance(0.001)
        if step % 25 == 24:
            for svc in fleet:
                await svc.sync()
    expected = 600 + 10 * 3.0  # the burst plus the refill over the run
    assert expected - 5 <= admitted <= expected, admitted  # never more: leases were charged up front
    counts = {k: sum(svc.counts[k] for svc in fleet) for k in ("lease_decisions", "remote_decisions",
                                                                "cached_refusals", "fallback_decisions")}
    assert counts["lease_decisions"] > 100  # far from the limit: leases
    assert counts["remote_decisions"] > 30  # near it: asked one at a time
    assert counts["cached_refusals"] > 1000  # exhausted: refused without asking
    assert counts["fallback_decisions"] == 0


async def test_a_known_exhausted_window_is_refused_in_process_until_it_refills():
    clock = FakeClock()
    store = FakeStore(clock)
    svc = service(clock, store)
    scopes = (QuotaScope("key", "k2", "acme", QuotaLimits(requests_per_min=4)),)
    ticket = await svc.acquire(scopes, 0, 30.0)
    assert ticket.decision.allowed and ticket.decided is Decided.REDIS
    assert svc.book.get(scopes[0]).held[0] == 1  # type: ignore[union-attr]  # 1/(2N) of the 3 left
    for _ in range(3):
        assert await admit(svc, scopes)  # one from the lease, two asked about (nothing more is leased)
    assert store.calls == 3
    ticket = await svc.acquire(scopes, 0, 30.0)
    d = ticket.decision
    assert not d.allowed and d.refused is Dimension.REQUESTS and ticket.decided is Decided.LEASE  # known: no call
    assert d.retry_after_s == pytest.approx(15.0)
    assert d.requests is not None and d.requests.remaining == 0
    assert store.calls == 3
    clock.advance(15.0)
    assert await admit(svc, scopes)  # refilled: asked again, allowed
    assert store.calls == 4


async def test_token_refunds_join_the_lease_and_debts_are_charged_at_the_next_sync():
    clock = FakeClock()
    store = FakeStore(clock)
    svc = service(clock, store)
    scopes = (QuotaScope("key", "k3", "acme", QuotaLimits(tokens_per_min=10_000, tokens_per_day=1_000_000)),)
    assert await admit(svc, scopes, tokens=1000, actual=400)  # 600 back into the lease
    lease = svc.book.get(scopes[0])
    assert lease is not None and lease.held[1] >= 600 and lease.held[2] >= 600
    before = store.quota.peek(scopes[0], clock.wall(), clock.wall())
    held = lease.held[1]
    actual = held + 500  # taken from the lease, then 500 more than all it held: a debt
    assert await admit(svc, scopes, tokens=100, actual=actual)
    assert lease.held[1] == -500 and store.calls == 1
    assert await svc.sync(final=True)  # give everything back, charge the debt
    after = store.quota.peek(scopes[0], clock.wall(), clock.wall())
    assert lease.held == [0, 0, 0]
    assert after[3] == 400 + actual  # tokens used today on the shared counters: exactly the actual usage
    assert after[1] - clock.wall() == pytest.approx((400 + actual) * 60 / 10_000, abs=1e-5)
    assert before[3] >= 1000 + 600  # the estimate and the lease were charged up front


async def test_idle_leases_are_given_back():
    clock = FakeClock()
    store = FakeStore(clock)
    svc = service(clock, store)
    for _ in range(30):
        assert await admit(svc)
    await svc.sync()
    assert store.remaining(RATE[0]) < 600 - 30  # some cells are held by this replica
    for _ in range(12):  # no traffic: the demand decays and the cells go back
        clock.advance(0.025)
        await svc.sync()
    clock.advance(0.0)
    assert store.remaining(RATE[0]) == 600 - 30 + round(12 * 0.025 * 10)
    assert svc.book.get(RATE[0]).held == [0, 0, 0]  # type: ignore[union-attr]


async def test_without_leases_every_request_is_asked():
    clock = FakeClock()
    store = FakeStore(clock)
    svc = service(clock, store, leases=False)
    for _ in range(10):
        assert await admit(svc)
        await svc.sync()
    assert store.calls == 10 and svc.counts["remote_decisions"] == 10
    assert store.remaining(RATE[0]) == 590  # nothing held in advance


async def test_far_from_a_concurrency_limit_slots_come_from_a_block():
    clock = FakeClock()
    store = FakeStore(clock)
    svc = service(clock, store)
    scopes = (QuotaScope("key", "c1", "acme", QuotaLimits(requests_per_min=100_000, concurrent_requests=1000)),)
    for _ in range(3):  # three at a time: the peak sizes the block
        warm = [await svc.acquire(scopes, 0, 30.0) for _ in range(3)]
        for t in warm:
            await svc.settle(t, None)
    await svc.sync()
    calls = store.calls
    held = [await svc.acquire(scopes, 0, 30.0) for _ in range(3)]  # three at once, from the block
    assert all(t.decision.allowed and t.decided is Decided.LEASE and t.lease_id is None for t in held)
    lease = svc.book.get(scopes[0])
    assert lease is not None and lease.busy == 3 and store.quota.inflight(scopes[0]) >= 3  # counted on the store
    for t in held:
        await svc.settle(t, None)  # released in-process: no call
    assert store.calls == calls and lease.busy == 0
    for _ in range(12):  # idle: the block goes back
        clock.advance(0.025)
        await svc.sync()
    assert store.quota.inflight(scopes[0]) == 0 and lease.slots == 0


async def test_at_a_concurrency_limit_a_slot_freed_anywhere_is_free_everywhere_at_once():
    limit = 40
    clock = FakeClock()
    store = FakeStore(clock)
    store.replicas = 3
    fleet = [service(clock, store) for _ in range(3)]
    for svc in fleet:
        await svc.beat()
    scopes = (QuotaScope("key", "c2", "acme", QuotaLimits(concurrent_requests=limit)),)
    rng = __import__("random").Random(5)
    active: list[tuple[QuotaService, object]] = []
    while len(active) < limit:  # fill up to the limit (blocks first, then slots of their own)
        svc = rng.choice(fleet)
        ticket = await svc.acquire(scopes, 0, 30.0)
        if ticket.decision.allowed:
            active.append((svc, ticket))
        for other in fleet:
            await other.sync()
    for svc in fleet:
        assert not (await svc.acquire(scopes, 0, 30.0)).decision.allowed  # never one more
    for _ in range(60):  # at the limit: end one, start the next at once on another replica
        i = rng.randrange(len(active))
        ended_on, ticket = active.pop(i)
        await ended_on.settle(ticket, None)  # type: ignore[arg-type]
        svc = rng.choice([s for s in fleet if s is not ended_on])
        ticket = await svc.acquire(scopes, 0, 30.0)
        assert ticket.decision.allowed  # not refused for the request that just ended
        active.append((svc, ticket))
        assert store.quota.inflight(scopes[0]) == limit  # blocks hold no spare slot at the limit
        if rng.random() < 0.3:
            clock.advance(0.025)
            for other in fleet:
                await other.sync()
    assert sum(s.counts["lease_decisions"] for s in fleet) + sum(s.counts["remote_decisions"] for s in fleet) > 60


# -- fail static -------------------------------------------------------------------------------
async def test_store_down_decides_locally_at_one_nth_and_breaker_stops_calls():
    clock = FakeClock()
    store = FakeStore(clock)
    svc = service(clock, store, replicas=3)
    store.down = True
    allowed = 0
    for _ in range(40):
        ticket = await svc.acquire(SCOPES, 0, 30.0)
        allowed += ticket.decision.allowed
        await svc.settle(ticket, None)
    assert allowed == 20  # 60/min shared by 3 replicas: a burst of 20 here
    assert store.calls == 3  # three failures opened the breaker; the rest never waited on the store
    state = svc.state()
    assert state["status"] == "degraded" and state["mode"] == "local" and state["breaker"] == "open"
    assert state["fallback_decisions"] == 40


async def test_slow_store_times_out_into_local_decisions():
    clock = FakeClock()
    store = FakeStore(clock)
    svc = service(clock, store, replicas=1)
    store.hang = True
    ticket = await asyncio.wait_for(svc.acquire(SCOPES, 0, 30.0), 1.0)
    assert ticket.decision.allowed and ticket.decided is Decided.FALLBACK
    assert str(svc.state()["last_error"]).startswith("TimeoutError")


async def test_recovers_by_itself_through_heartbeat_probes():
    clock = FakeClock()
    store = FakeStore(clock)
    svc = service(clock, store)
    store.down = True
    for _ in range(3):
        await svc.acquire(SCOPES, 0, 30.0)
    assert svc.state()["breaker"] == "open"
    store.down = False
    clock.advance(0.6)  # past open_s: half-open
    assert await svc.beat()  # first probe
    clock.advance(0.01)
    assert await svc.beat()  # second probe closes the breaker
    assert svc.state()["mode"] == "redis"
    ticket = await svc.acquire(SCOPES, 0, 30.0)
    assert ticket.lease_id is not None and svc.counts["remote_decisions"] == 1


async def test_failed_release_is_kept_and_retried_after_a_good_heartbeat():
    clock = FakeClock()
    store = FakeStore(clock)
    svc = service(clock, store)
    ticket = await svc.acquire(SCOPES, 0, 30.0)
    assert ticket.lease_id is not None
    store.down = True
    await svc.settle(ticket, None)  # fails: queued
    assert svc.state()["pending_settles"] == 1 and store.released == []
    store.down = False
    assert await svc.beat()
    assert store.released == [ticket.lease_id] and svc.state()["pending_settles"] == 0


async def test_replicas_seen_in_heartbeats_set_the_share():
    clock = FakeClock()
    store = FakeStore(clock)
    svc = service(clock, store)
    store.replicas = 4
    await svc.beat()
    assert svc.divisor() == 4
    store.down = True
    allowed = 0
    for _ in range(30):
        allowed += (await svc.acquire(SCOPES, 0, 30.0)).decision.allowed
    assert allowed == 15  # 60 / 4


async def test_fallback_starts_from_the_last_snapshot_and_charges_the_day_when_back():
    # 1,000,000 tokens a day across 2 replicas; 800,000 already used when the store goes away.
    clock = FakeClock(start_s=1000.0, wall_offset_s=20_000 * DAY_S + 3600.0)
    store = FakeStore(clock)
    svc = service(clock, store, replicas=2)
    daily = (QuotaScope("key", "k4", "acme", QuotaLimits(tokens_per_day=1_000_000)),)
    for _ in range(8):
        assert await admit(svc, daily, tokens=100_000)
    await svc.sync(final=True)
    assert store.quota.peek(daily[0], clock.wall(), clock.wall())[3] == 800_000
    store.down = True
    spent = 0
    for _ in range(50):  # the store is away: 1/2 of the day's budget, minus 1/2 of what is used
        if await admit(svc, daily, tokens=10_000):
            spent += 10_000
    assert spent == (1_000_000 - 800_000) // 2  # not 500,000: the fallback did not start from zero
    assert svc.counts["fallback_decisions"] == 50
    store.down = False
    clock.advance(1.0)
    assert await svc.beat() and await svc.beat()
    assert await svc.sync()
    lease = svc.book.get(daily[0])
    assert lease is not None and lease.held[2] >= 0  # the debt is paid; what is held now is a new lease
    used = store.quota.peek(daily[0], clock.wall(), clock.wall())[3]
    assert used - lease.held[2] == 800_000 + spent  # the outage's tokens were charged when it was back


async def test_without_redis_processes_split_the_quota():
    svc = QuotaService(clock=FakeClock(), processes=2, replicas=None)
    assert svc.state() == {"status": "ok", "mode": "local", "replicas": 2}
