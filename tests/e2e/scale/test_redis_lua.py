"""The Lua scripts shipped in ``seawall/edges/stores/lua`` called directly on a real Redis, one
contract at a time: what a call charges, what it refuses and how long it asks to wait, windows that
refill and days that roll over, leases granted at most 1/(2N) of what is left, concurrency leases
and blocks released and expired, the heartbeat; and, on a throwaway server, ``SCRIPT FLUSH`` in the
middle of a run (as after a restart or a failover) with the next calls still answered.

The store's own tests (``test_redis_quota.py``) compare the script with the in-process algorithm on
random walks; these pin the wire contract written at the head of ``take.lua``, so a change to the
script that the store happens to tolerate still shows."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from importlib import resources

import pytest
import redis.asyncio as aioredis

from seawall.algorithms.quota import QuotaLimits, QuotaScope
from seawall.edges.stores.redis_quota import HEARTBEAT_LUA, TAKE_LUA, RedisQuotaStore
from tests.e2e.scale.services import RedisServer

pytestmark = pytest.mark.e2e

T0 = 1_700_000_000.0  # 22:13:20 UTC: a day boundary is 6,400 s away
DAY0 = int(T0 // 86400)
NO_LIMIT = -1


class Take:
    """``take.lua`` with named arguments; every call returns the reply decoded into fields."""

    def __init__(self, client: aioredis.Redis, sha: str, prefix: str) -> None:
        self.client, self.sha, self.prefix = client, sha, prefix

    def key(self, scope: str, suffix: str = "") -> str:
        return f"{self.prefix}:{scope}{suffix}"

    async def __call__(self, scopes: dict[str, tuple[int, int, int, int]], now: float, *, tokens: int = -1,
                       lease: str = "", ttl_s: float = 0.0, replicas: int = 1, ops: list[str] | None = None,
                       release: str = "", owner: str = "", block_ttl_s: float = 10.0) -> Reply:
        limits = ";".join(" ".join(str(v) for v in lim) for lim in scopes.values())
        out = await self.client.evalsha(
            self.sha, len(scopes), *(self.key(s) for s in scopes), limits, repr(now), tokens, lease, repr(ttl_s),
            replicas, ";".join(ops or []), release, owner, repr(block_ttl_s))
        return Reply(out)


class Reply:
    """The reply's head and one row of ten fields per scope, named as in ``take.lua``."""

    def __init__(self, out: list[object]) -> None:
        self.allowed, self.dimension, self.scope = int(out[0]), int(out[1]), int(out[2])
        self.wait_s, self.now = str(out[3]), float(out[4])
        self.rows = [out[i:i + 10] for i in range(5, len(out), 10)]

    def field(self, scope: int, name: str) -> object:
        names = ("decision_rpm_tat", "decision_tpm_tat", "rpm_tat", "tpm_tat", "used_today", "granted_rpm",
                 "granted_tpm", "granted_day", "slots", "in_flight")
        return self.rows[scope][names.index(name)]


def op(adjust: tuple[int, int, int] = (0, 0, 0), day: int = DAY0, want: tuple[int, int, int] = (0, 0, 0),
       slots: int = -1, floor: int = 0) -> str:
    return " ".join(str(v) for v in (*adjust, day, *want, slots, floor))


@pytest.fixture
async def take(redis_url: str, redis_prefix: str) -> AsyncIterator[Take]:
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    sha = await client.script_load(TAKE_LUA)
    yield Take(client, sha, redis_prefix)
    await client.aclose()


def test_the_scripts_are_package_files() -> None:
    lua = resources.files("seawall.edges.stores").joinpath("lua")
    assert lua.joinpath("take.lua").read_text(encoding="utf-8") == TAKE_LUA
    assert lua.joinpath("heartbeat.lua").read_text(encoding="utf-8") == HEARTBEAT_LUA
    assert "redis.call" in TAKE_LUA and "KEYS" in HEARTBEAT_LUA


async def test_a_request_is_charged_until_the_window_is_spent_then_refused(take: Take):
    rpm = {"a": (3, NO_LIMIT, NO_LIMIT, NO_LIMIT)}
    for i in range(3):
        r = await take(rpm, T0, tokens=0)
        assert (r.allowed, r.dimension, r.wait_s) == (1, 0, "0.000000"), i
        assert float(await take.client.get(take.key("a", ":rpm"))) == pytest.approx(T0 + 20 * (i + 1))
    r = await take(rpm, T0, tokens=0)
    assert (r.allowed, r.dimension, r.scope) == (0, 2, 1)  # requests/min, scope 1
    assert float(r.wait_s) == pytest.approx(20.0)  # one cell of a 3/min bucket
    assert float(await take.client.get(take.key("a", ":rpm"))) == pytest.approx(T0 + 60)  # not charged
    assert r.now == T0


async def test_the_window_refills_one_cell_per_interval(take: Take):
    rpm = {"a": (3, NO_LIMIT, NO_LIMIT, NO_LIMIT)}
    for _ in range(3):
        await take(rpm, T0, tokens=0)
    assert (await take(rpm, T0 + 19.9, tokens=0)).allowed == 0
    assert (await take(rpm, T0 + 20.0, tokens=0)).allowed == 1
    assert (await take(rpm, T0 + 20.0, tokens=0)).allowed == 0
    r = await take(rpm, T0 + 200, tokens=0)  # long idle: full again, never more than the burst
    assert r.allowed == 1 and float(r.field(0, "rpm_tat")) == pytest.approx(T0 + 220)


async def test_tokens_per_minute_charge_the_estimate_and_refuse_what_never_fits(take: Take):
    tpm = {"a": (NO_LIMIT, 600, NO_LIMIT, NO_LIMIT)}
    assert (await take(tpm, T0, tokens=400)).allowed == 1
    r = await take(tpm, T0, tokens=300)
    assert (r.allowed, r.dimension) == (0, 3) and float(r.wait_s) == pytest.approx(10.0)  # 100 tokens at 10/s
    r = await take(tpm, T0, tokens=601)
    assert (r.allowed, r.dimension, r.wait_s) == (0, 3, "inf")  # larger than the whole bucket


async def test_refusal_is_all_or_nothing_across_scopes(take: Take):
    both = {"key": (10, NO_LIMIT, 5, 1000), "tenant": (NO_LIMIT, 100, NO_LIMIT, NO_LIMIT)}
    r = await take(both, T0, tokens=150, lease="l1", ttl_s=30)
    assert (r.allowed, r.dimension, r.scope) == (0, 3, 2)  # the tenant's tokens/min
    for suffix in (":rpm", ":conc", ":day"):
        assert not await take.client.exists(take.key("key", suffix)), suffix  # nothing charged on the key


async def test_the_daily_budget_refuses_until_midnight_and_rolls_over(take: Take):
    day = {"a": (NO_LIMIT, NO_LIMIT, NO_LIMIT, 1000)}
    assert (await take(day, T0, tokens=700)).allowed == 1
    r = await take(day, T0, tokens=400)
    assert (r.allowed, r.dimension) == (0, 4)
    assert float(r.wait_s) == pytest.approx((DAY0 + 1) * 86400 - T0)  # until the next UTC day
    assert r.field(0, "used_today") == 700
    assert 0 < await take.client.ttl(take.key("a", ":day")) <= 172800
    r = await take(day, (DAY0 + 1) * 86400 + 1, tokens=400)
    assert r.allowed == 1 and r.field(0, "used_today") == 400
    assert (await take(day, T0, tokens=1001)).wait_s == "inf"


async def test_adjustments_give_back_and_reconcile(take: Take):
    lim = {"a": (NO_LIMIT, 600, NO_LIMIT, 1000)}
    await take(lim, T0, tokens=500)
    r = await take(lim, T0, ops=[op(adjust=(0, -300, -300))])  # the answer used 300 tokens fewer
    assert float(r.field(0, "tpm_tat")) == pytest.approx(T0 + 20)  # 200 tokens at 10/s
    assert r.field(0, "used_today") == 200
    r = await take(lim, T0, ops=[op(adjust=(0, 0, 50), day=DAY0 - 1)])  # yesterday's: the day is left alone
    assert r.field(0, "used_today") == 200


async def test_leases_are_at_most_one_2n_th_of_what_is_left(take: Take):
    lim = {"a": (100, 10_000, NO_LIMIT, 50_000)}
    r = await take(lim, T0, replicas=5, ops=[op(want=(50, 50, 50))])
    assert [r.field(0, f) for f in ("granted_rpm", "granted_tpm", "granted_day")] == [10, 50, 50]
    assert float(r.field(0, "rpm_tat")) == pytest.approx(T0 + 10 * 0.6)  # charged up front
    assert r.field(0, "used_today") == 50
    r = await take(lim, T0, replicas=5, ops=[op(want=(1000, 0, 0))])
    assert r.field(0, "granted_rpm") == 9  # 90 left, /10
    r = await take(lim, T0, tokens=0, replicas=1, ops=[op(want=(0, 0, 0))])
    assert r.allowed == 1 and r.field(0, "granted_rpm") == 0  # nothing asked, nothing given


async def test_no_lease_is_granted_along_with_a_refused_request(take: Take):
    lim = {"a": (1, NO_LIMIT, NO_LIMIT, NO_LIMIT)}
    await take(lim, T0, tokens=0)
    r = await take(lim, T0, tokens=0, ops=[op(want=(5, 0, 0))])
    assert r.allowed == 0 and r.field(0, "granted_rpm") == 0


async def test_concurrency_leases_are_released_or_expire(take: Take):
    conc = {"a": (NO_LIMIT, NO_LIMIT, 2, NO_LIMIT)}
    assert (await take(conc, T0, tokens=0, lease="x", ttl_s=30)).allowed == 1
    r = await take(conc, T0, tokens=0, lease="y", ttl_s=5)
    assert r.allowed == 1 and r.field(0, "in_flight") == 2
    r = await take(conc, T0, tokens=0, lease="z", ttl_s=30)
    assert (r.allowed, r.dimension, r.wait_s) == (0, 1, "1.000000")
    r = await take(conc, T0 + 1, release="x")  # a settle: no request, the lease goes
    assert r.field(0, "in_flight") == 1
    assert (await take(conc, T0 + 1, tokens=0, lease="z", ttl_s=30)).allowed == 1
    r = await take(conc, T0 + 5.5, tokens=0, lease="w", ttl_s=30)  # "y" was never released: expired
    assert r.allowed == 1 and r.field(0, "in_flight") == 2


async def test_blocks_of_slots_count_as_in_flight_until_shrunk_or_expired(take: Take):
    conc = {"a": (NO_LIMIT, NO_LIMIT, 20, NO_LIMIT)}
    r = await take(conc, T0, owner="A", ops=[op(slots=8)], block_ttl_s=10)
    assert (r.field(0, "slots"), r.field(0, "in_flight")) == (8, 8)  # 20 free, at most 1/2 for N = 1
    r = await take(conc, T0, owner="B", replicas=2, ops=[op(slots=8)], block_ttl_s=10)
    assert r.field(0, "slots") == 3  # 12 free, at most 1/(2*2)
    r = await take(conc, T0 + 1, owner="A", ops=[op(slots=2)], block_ttl_s=10)
    assert (r.field(0, "slots"), r.field(0, "in_flight")) == (2, 5)  # A gave 6 back
    r = await take(conc, T0 + 1, owner="A", ops=[op(slots=0)], block_ttl_s=10)
    assert (r.field(0, "slots"), r.field(0, "in_flight")) == (0, 3)
    assert not await take.client.hexists(take.key("a", ":cb"), "A")
    r = await take(conc, T0 + 10.5, ops=[op()])  # B's block was not refreshed for 10 s
    assert r.field(0, "in_flight") == 0


async def test_a_call_without_an_explicit_time_uses_redis_time(take: Take):
    r = await take({"a": (5, NO_LIMIT, NO_LIMIT, NO_LIMIT)}, 0, tokens=0)
    seconds, micros = await take.client.time()
    assert r.allowed == 1 and abs(r.now - (seconds + micros / 1e6)) < 60  # Redis's clock, not ours


async def test_heartbeat_counts_replicas_whose_last_beat_is_within_ttl(redis_url: str, redis_prefix: str):
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    sha, key = await client.script_load(HEARTBEAT_LUA), f"{redis_prefix}:replicas"
    try:
        assert await client.evalsha(sha, 1, key, "a", 60) == 1
        assert await client.evalsha(sha, 1, key, "b", 60) == 2
        assert await client.evalsha(sha, 1, key, "a", 60) == 2
        await client.zadd(key, {"gone": 1.0})  # a replica whose last beat expired long ago
        assert await client.evalsha(sha, 1, key, "a", 60) == 2
        assert await client.zscore(key, "gone") is None
        assert 0 < await client.pttl(key) <= 120_000
    finally:
        await client.aclose()


async def test_script_flush_mid_run_every_next_call_still_works(throwaway_redis: RedisServer):
    """A restart or a failover empties the script cache while requests are in flight: every call
    after it (decisions, settles, a pipelined sync, heartbeats) still answers, each charged once."""
    store = RedisQuotaStore(throwaway_redis.url, prefix="flush")
    admin = aioredis.Redis.from_url(throwaway_redis.url)
    sc = (QuotaScope("key", "k", "t", QuotaLimits(requests_per_min=1000, concurrent_requests=500)),)
    try:
        allowed = int((await store.acquire(sc, 0, "warm", 60.0, now_s=T0))[0].allowed)  # the script is loaded
        for round_ in range(4):
            results = await asyncio.gather(
                *(store.acquire(sc, 0, f"l{round_}-{i}", 60.0, now_s=T0) for i in range(20)), admin.script_flush(),
                *(store.acquire(sc, 0, f"m{round_}-{i}", 60.0, now_s=T0) for i in range(20)))
            decisions = [d for d, _ in results[:20] + results[21:]]
            allowed += sum(d.allowed for d in decisions)
            await admin.script_flush()
            await store.settle(sc, 0, f"l{round_}-0", T0, now_s=T0)
            await admin.script_flush()
            assert await store.heartbeat(f"r{round_}", 30.0) == round_ + 1
        assert allowed == 161
        took = await store.take(sc, 0, "last", 60.0, now_s=T0)
        assert took.decision is not None and took.decision.requests is not None
        assert took.decision.requests.remaining == 1000 - 162  # each request charged exactly once
        assert took.states[0].in_flight == 162 - 4  # four leases released
    finally:
        await store.close()
        await admin.aclose()
