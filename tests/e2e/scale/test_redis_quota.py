"""The Redis quota script against a real Redis: the same decisions, leases and adjustments as the
in-process reference (step for step, explicit time), atomic under concurrency, concurrency leases
that expire, replica heartbeats, and recovery from an emptied script cache (single calls and
pipelined syncs)."""

from __future__ import annotations

import asyncio
import random

import pytest
import redis.asyncio as aioredis

from seawall.algorithms.quota import DAY_S, LocalQuota, QuotaLimits, QuotaScope
from seawall.algorithms.quota_lease import SyncOp
from seawall.edges.stores.redis_quota import RedisQuotaStore
from tests.e2e.scale.services import RedisServer

pytestmark = pytest.mark.e2e

T0 = 1_700_000_000.0


def scopes(tenant: str = "acme", **key_limits: int) -> tuple[QuotaScope, ...]:
    return (QuotaScope("key", "k1", tenant, QuotaLimits(**key_limits)),
            QuotaScope("tenant", tenant, tenant, QuotaLimits(requests_per_min=40, tokens_per_day=50_000)))


async def test_script_decides_exactly_like_the_local_algorithm(redis_url, redis_prefix):
    store = RedisQuotaStore(redis_url, prefix=redis_prefix)
    seen: set[object] = set()
    try:
        for n, rpm in enumerate((30, 8)):  # concurrency binds first with 30/min, requests/min with 8
            sc = scopes(f"t{n}", requests_per_min=rpm, tokens_per_min=6_000, concurrent_requests=5,
                        tokens_per_day=9_000)
            seen |= await _walk(store, sc, random.Random(7 + n))
        assert len(seen) == 5, seen  # allowed, and every kind of refusal
    finally:
        await store.close()


async def _walk(store: RedisQuotaStore, sc: tuple[QuotaScope, ...], rng: random.Random) -> set[object]:
    local = LocalQuota()
    now, open_leases, seen = T0, [], set()
    for i in range(300):
        now += rng.choice([0.0, 0.0, 0.05, 0.5, 3.0])
        if open_leases and rng.random() < 0.3:
            lease, tokens, at = open_leases.pop(rng.randrange(len(open_leases)))
            delta = rng.randint(-tokens, 200)
            await store.settle(sc, delta, lease, at, now_s=now)
            local.settle(sc, delta, now, now, at)
            continue
        tokens = rng.choice([10, 50, 300, 900, 7000])
        remote, at = await store.acquire(sc, tokens, f"l{i}", 300.0, now_s=now)
        mine = local.acquire(sc, tokens, now, now)
        assert (remote.allowed, remote.refused, remote.scope) == (mine.allowed, mine.refused, mine.scope), i
        assert remote.retry_after_s == pytest.approx(mine.retry_after_s, abs=1e-4), i
        for a, b in ((remote.requests, mine.requests), (remote.tokens, mine.tokens)):
            assert a is not None and b is not None
            assert (a.limit, a.remaining) == (b.limit, b.remaining), i
            assert a.reset_s == pytest.approx(b.reset_s, abs=1e-5), i
        seen.add(remote.refused)
        if remote.allowed:
            open_leases.append((f"l{i}", tokens, at))
    return seen


async def test_leases_adjustments_and_state_match_the_reference(redis_url, redis_prefix):
    """Requests with top-ups and blocks of slots, releases, and syncs with give-backs, debts, top-ups
    and resized blocks, by two owners, in a random walk: Redis grants, charges, holds and reports
    exactly what LocalQuota.acquire/settle/grant/adjust/hold/peek do."""
    store = RedisQuotaStore(redis_url, prefix=redis_prefix, block_ttl_s=1e7)  # blocks expire: another test
    rng = random.Random(11)
    sc = (QuotaScope("key", "lk", "lease-t", QuotaLimits(requests_per_min=50, tokens_per_min=20_000,
                                                         concurrent_requests=30, tokens_per_day=60_000)),
          QuotaScope("tenant", "lease-t", "lease-t", QuotaLimits(requests_per_min=200, concurrent_requests=60)))
    local, now, granted_any, held_any, open_leases = LocalQuota(), T0 + 0.25, 0, 0, []
    try:
        for i in range(400):
            now = round(now + rng.choice([0.0, 0.01, 0.2, 2.0]), 6)
            replicas, owner = rng.choice([1, 2, 5]), rng.choice(["A", "B"])
            day = int(now // DAY_S)
            roll = rng.random()
            if roll < 0.15 and open_leases:
                lease, at = open_leases.pop(rng.randrange(len(open_leases)))
                await store.settle(sc, 0, lease, at, now_s=now)
                local.settle(sc, 0, now, now, at)
                continue
            if roll < 0.5:
                ops = []
                for s in sc:
                    slots = rng.randint(-1, 12)
                    ops.append(SyncOp(s, (rng.randint(-5, 3), rng.randint(-800, 800), rng.randint(-800, 800)), day,
                                      (rng.randint(0, 9), rng.randint(0, 3000), rng.randint(0, 3000)), slots,
                                      rng.randint(0, max(slots, 0))))
                (took,) = await store.sync([ops], replicas, owner, now_s=now)
                expected = []
                for op in ops:
                    local.adjust(op.scope, *op.adjust, op.day, now, now)
                    grant = local.grant(op.scope, op.want, replicas, now, now)
                    expected.append((grant, local.hold(op.scope, owner, op.slots, op.floor, replicas)))
            else:
                tokens = rng.choice([10, 300, 2000])
                wants = []
                for _ in sc:
                    slots = rng.randint(-1, 12)
                    wants.append((rng.randint(0, 9), rng.randint(0, 3000), rng.randint(0, 3000), slots,
                                  rng.randint(0, max(slots, 0))))
                took = await store.take(sc, tokens, f"l{i}", 1e7, replicas=replicas, wants=wants, owner=owner,
                                        now_s=now)
                mine = local.acquire(sc, tokens, now, now)
                assert took.decision is not None and took.decision.allowed == mine.allowed, i
                assert took.decision.refused == mine.refused, i
                if mine.allowed:
                    open_leases.append((f"l{i}", now))
                    expected = [(local.grant(s, w[:3], replicas, now, now),
                                 local.hold(s, owner, w[3], w[4], replicas, grow_only=True))
                                for s, w in zip(sc, wants, strict=True)]
                else:
                    expected = [((0, 0, 0), -1) for _ in sc]
            assert took.at_s == now
            for s, state, (grant, slots) in zip(sc, took.states, expected, strict=True):
                rtat, ttat, d, used = local.peek(s, now, now)
                assert (state.granted, state.slots) == (grant, slots), i
                assert (state.day, state.day_used, state.in_flight) == (d, used, local.inflight(s)), i
                assert state.requests_tat == pytest.approx(rtat, abs=1e-6), i
                assert state.tokens_tat == pytest.approx(ttat, abs=1e-6), i
                granted_any += sum(grant)
                held_any += max(slots, 0)
        assert granted_any > 0 and held_any > 0
    finally:
        await store.close()


async def test_blocks_of_a_dead_replica_expire(redis_url, redis_prefix):
    store = RedisQuotaStore(redis_url, prefix=redis_prefix, block_ttl_s=0.5)
    sc = (QuotaScope("key", "blk", "t", QuotaLimits(concurrent_requests=10)),)
    try:
        (took,) = await store.sync([[SyncOp(sc[0], (0, 0, 0), 0, (0, 0, 0), 4, 0)]], 1, "dead", now_s=T0)
        assert took.states[0].slots == 4 and took.states[0].in_flight == 4  # at most 1/(2N) of the 10 free
        took = await store.take(sc, 0, "x", 1.0, owner="alive", now_s=T0 + 0.1)
        assert took.decision is not None and took.decision.allowed and took.states[0].in_flight == 5
        took = await store.take(sc, 0, "y", 1.0, owner="alive", now_s=T0 + 0.6)  # "dead" stopped refreshing
        assert took.states[0].in_flight == 2  # its block is gone; "x" and "y" remain
    finally:
        await store.close()


async def test_no_check_then_act_race_under_concurrency(redis_url, redis_prefix):
    stores = [RedisQuotaStore(redis_url, prefix=redis_prefix) for _ in range(3)]  # three "replicas"
    sc = (QuotaScope("key", "race", "race", QuotaLimits(requests_per_min=25, concurrent_requests=10)),)
    try:
        results = await asyncio.gather(*(stores[i % 3].acquire(sc, 0, f"l{i}", 30.0) for i in range(120)))
        assert sum(d.allowed for d, _ in results) == 10  # the concurrency limit, exactly
        for i, (d, at) in enumerate(results):
            if d.allowed:
                await stores[0].settle(sc, 0, f"l{i}", at)
        results = await asyncio.gather(*(stores[i % 3].acquire(sc, 0, f"m{i}", 30.0) for i in range(60)))
        assert sum(d.allowed for d, _ in results) == 10  # 25 per minute, 10 taken, 10 more slots
    finally:
        for s in stores:
            await s.close()


async def test_leases_of_a_dead_replica_expire(redis_url, redis_prefix):
    store = RedisQuotaStore(redis_url, prefix=redis_prefix)
    sc = (QuotaScope("key", "lease", "t", QuotaLimits(concurrent_requests=1)),)
    try:
        assert (await store.acquire(sc, 0, "held", 0.2, now_s=T0))[0].allowed
        assert not (await store.acquire(sc, 0, "other", 0.2, now_s=T0 + 0.1))[0].allowed
        assert (await store.acquire(sc, 0, "other", 0.2, now_s=T0 + 0.3))[0].allowed  # never released
    finally:
        await store.close()


async def test_heartbeats_count_live_replicas(redis_url, redis_prefix):
    store = RedisQuotaStore(redis_url, prefix=redis_prefix)
    try:
        assert await store.heartbeat("a", 0.3) == 1
        assert await store.heartbeat("b", 0.3) == 2
        await store.leave("b")
        assert await store.heartbeat("a", 0.3) == 1
        await asyncio.sleep(0.35)
        assert await store.heartbeat("c", 0.3) == 1  # "a" stopped beating
    finally:
        await store.close()


async def test_script_cache_emptied_by_a_restart_is_reloaded(throwaway_redis: RedisServer):
    store = RedisQuotaStore(throwaway_redis.url, prefix="noscript")
    sc = (QuotaScope("key", "k", "t", QuotaLimits(requests_per_min=5)),)
    try:
        assert (await store.acquire(sc, 0, "a", 1.0))[0].allowed
        await admin_flush(throwaway_redis.url)
        decision, _ = await store.acquire(sc, 0, "b", 1.0)
        assert decision.allowed and decision.requests is not None and decision.requests.remaining == 3
        await admin_flush(throwaway_redis.url)
        other = (QuotaScope("key", "k2", "u", QuotaLimits(requests_per_min=5)),)
        took = await store.sync([[SyncOp(sc[0], (0, 0, 0), 0, (1, 0, 0))], [SyncOp(other[0], (0, 0, 0), 0, (2, 0, 0))]],
                                replicas=1)  # a pipeline of two calls, both refused for NOSCRIPT, both sent again
        assert [t.states[0].granted[0] for t in took] == [1, 2]
    finally:
        await store.close()


async def admin_flush(url: str) -> None:
    admin = aioredis.Redis.from_url(url)
    await admin.script_flush()
    await admin.aclose()
