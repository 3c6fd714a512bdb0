"""Fail static: when the shared quota store fails or is slow, decisions go local at 1/N, the breaker
stops the calls, and the service returns to the store by itself (fake store, fake clock)."""

import asyncio

from seawall.algorithms.quota import LocalQuota, QuotaLimits, QuotaScope
from seawall.edges.quota import QuotaService
from seawall.testing import FakeClock

T = 1_700_000_000.0
SCOPES = (QuotaScope("key", "k1", "acme", QuotaLimits(requests_per_min=60, concurrent_requests=100)),)


class FakeStore:
    """Stands in for RedisQuotaStore: the same decisions (a LocalQuota), and switchable faults."""

    def __init__(self) -> None:
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

    async def acquire(self, scopes, tokens, lease_id, lease_ttl_s, now_s=0.0):
        await self._fault()
        return self.quota.acquire(scopes, tokens, T, T), T

    async def settle(self, scopes, tokens_delta, lease_id, acquired_s, now_s=0.0):
        await self._fault()
        self.released.append(lease_id)
        self.quota.settle(scopes, tokens_delta, T, T, acquired_s)

    async def heartbeat(self, replica_id, ttl_s):
        await self._fault()
        return self.replicas

    async def leave(self, replica_id):
        pass

    async def close(self):
        pass


def service(clock, store, **kw) -> QuotaService:
    return QuotaService(clock=clock, redis=store, timeout_s=0.02, **kw)  # type: ignore[arg-type]


async def test_store_down_decides_locally_at_one_nth_and_breaker_stops_calls():
    clock, store = FakeClock(), FakeStore()
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


async def test_slow_store_times_out_into_local_decisions():
    clock, store = FakeClock(), FakeStore()
    svc = service(clock, store, replicas=1)
    store.hang = True
    ticket = await asyncio.wait_for(svc.acquire(SCOPES, 0, 30.0), 1.0)
    assert ticket.decision.allowed and ticket.lease_id is None
    assert svc.state()["last_error"].startswith("TimeoutError")


async def test_recovers_by_itself_through_heartbeat_probes():
    clock, store = FakeClock(), FakeStore()
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
    assert ticket.lease_id is not None and svc.remote_decisions == 1


async def test_failed_release_is_kept_and_retried_after_a_good_heartbeat():
    clock, store = FakeClock(), FakeStore()
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
    clock, store = FakeClock(), FakeStore()
    svc = service(clock, store)
    store.replicas = 4
    await svc.beat()
    assert svc.divisor() == 4
    store.down = True
    allowed = 0
    for _ in range(30):
        allowed += (await svc.acquire(SCOPES, 0, 30.0)).decision.allowed
    assert allowed == 15  # 60 / 4


async def test_without_redis_processes_split_the_quota():
    svc = QuotaService(clock=FakeClock(), processes=2, replicas=None)
    assert svc.state() == {"status": "ok", "mode": "local", "replicas": 2}
