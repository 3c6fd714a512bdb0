"""The Redis quota scripts against a real Redis: the same decisions as the in-process algorithm
(step for step, explicit time), atomic under concurrency, leases that expire, replica heartbeats,
and recovery from an emptied script cache."""

from __future__ import annotations

import asyncio
import random

import pytest
import redis.asyncio as aioredis

from seawall.algorithms.quota import LocalQuota, QuotaLimits, QuotaScope
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
        admin = aioredis.Redis.from_url(throwaway_redis.url)
        await admin.script_flush()
        await admin.aclose()
        decision, _ = await store.acquire(sc, 0, "b", 1.0)
        assert decision.allowed and decision.requests is not None and decision.requests.remaining == 3
    finally:
        await store.close()
