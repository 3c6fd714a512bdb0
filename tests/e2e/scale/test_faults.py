"""Faults under load, against throwaway servers this test starts and stops (never the shared ones):
Redis gone (no 5xx, local counters at 1/N, back to Redis by itself), PostgreSQL gone (serving goes
on, the ledger spills and replays, nothing lost or doubled), and a gateway killed with SIGKILL
(everything answered more than one flush interval before the kill is in the ledger exactly once)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import asyncpg
import pytest

from tests.e2e.harness import Proc
from tests.e2e.scale.cluster import (
    accepted,
    chat_body,
    create_key,
    gateway_config,
    hammer,
    readiness,
    start_replica,
    statuses,
    wait_until,
    write_config,
)
from tests.e2e.scale.services import PgCluster, RedisServer

pytestmark = pytest.mark.e2e


async def _until(predicate, timeout_s: float, step_s: float = 0.05) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout_s:
        if await asyncio.to_thread(predicate):
            return time.monotonic() - start
        await asyncio.sleep(step_s)
    raise AssertionError(f"not within {timeout_s}s")


def _quota_mode(url: str) -> str:
    return str(readiness(url)["dependencies"]["quota_store"]["mode"])


async def _ledger_rows(url: str, schema: str) -> dict[str, int]:
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch(f'SELECT request_id, count(*) AS n FROM "{schema}".usage GROUP BY request_id')
    finally:
        await conn.close()
    return {r["request_id"]: int(r["n"]) for r in rows}


async def test_redis_outage_falls_back_to_local_counters_and_recovers(
        tmp_path: Path, upstream: Proc, throwaway_redis: RedisServer):
    config = gateway_config(tmp_path, upstream.url, redis_url=throwaway_redis.url, replicas=2, quotas={
        "tenants": {"big": {"key": {"requests_per_min": 1_000_000}}, "small": {"key": {"requests_per_min": 120}}}})
    path = write_config(tmp_path, config, "redis-outage")
    gw = start_replica(tmp_path, path)
    try:
        big, small = create_key(tmp_path, path, "big")["key"], create_key(tmp_path, path, "small")["key"]
        wait_until(lambda: accepted(gw.url, big) and accepted(gw.url, small), 5)
        assert _quota_mode(gw.url) == "redis"
        stop = asyncio.Event()
        load = asyncio.create_task(hammer([gw.url], big, chat_body(), duration_s=20, concurrency=6, stop=stop))
        await asyncio.sleep(0.7)
        await asyncio.to_thread(throwaway_redis.stop)
        await _until(lambda: _quota_mode(gw.url) == "local", 3)
        assert readiness(gw.url)["status"] == "degraded"  # degraded, still ready: no orchestrator pulls it
        # While Redis is away this replica holds 1/N (N = 2 replicas) of the global quota: 60 of 120.
        burst = await hammer([gw.url], small, chat_body(), duration_s=3, concurrency=4, max_requests=150)
        admitted = statuses(burst).get(200, 0)
        assert 57 <= admitted <= 64, statuses(burst)
        await asyncio.to_thread(throwaway_redis.start)
        recovered_s = await _until(lambda: _quota_mode(gw.url) == "redis", 8)
        await asyncio.sleep(0.5)
        stop.set()
        results = await load
        assert statuses(results) == {200: len(results)}, statuses(results)  # no request failed for Redis
        assert len(results) > 100 and recovered_s < 8
        assert results[-1].headers["x-ratelimit-limit-requests"] == "1000000"
    finally:
        gw.stop()


async def test_postgres_outage_keeps_serving_and_the_ledger_loses_and_doubles_nothing(
        tmp_path: Path, upstream: Proc, throwaway_pg: PgCluster, run_id: str):
    schema = f"{run_id}_pgout"
    config = gateway_config(tmp_path, upstream.url, database_url=throwaway_pg.url, schema=schema,
                            store={"ledger_flush_interval_s": 0.2})
    path = write_config(tmp_path, config, "pg-outage")
    gw = start_replica(tmp_path, path)
    stopped = False
    try:
        key = create_key(tmp_path, path, "acme")["key"]
        wait_until(lambda: accepted(gw.url, key), 5)
        stop = asyncio.Event()
        load = asyncio.create_task(hammer([gw.url], key, chat_body(), duration_s=20, concurrency=6, stop=stop))
        await asyncio.sleep(0.8)
        await asyncio.to_thread(throwaway_pg.stop)
        await _until(lambda: readiness(gw.url)["dependencies"]["ledger"]["spilled"] > 0, 5)
        await _until(lambda: readiness(gw.url)["dependencies"]["key_store"]["status"] == "degraded", 5)
        await asyncio.sleep(0.5)  # serving on from the key snapshot while the ledger spills
        deps = readiness(gw.url)["dependencies"]
        assert deps["key_store"]["status"] == "degraded" and deps["ledger"]["status"] == "degraded"
        assert readiness(gw.url)["status"] == "degraded"
        await asyncio.to_thread(throwaway_pg.start)
        await _until(lambda: readiness(gw.url)["dependencies"]["ledger"]["replayed"] > 0, 10)
        stop.set()
        results = await load
        await asyncio.to_thread(gw.stop)  # graceful: the last buffered records are flushed
        stopped = True
        assert statuses(results) == {200: len(results)}, statuses(results)
        rows = await _ledger_rows(throwaway_pg.url, schema)
        sent = {r.request_id for r in results}
        assert set(rows) == sent, f"{len(sent - set(rows))} of {len(sent)} lost"
        assert set(rows.values()) == {1}  # none doubled
    finally:
        if not stopped:
            gw.stop()


async def test_sigkill_loses_nothing_answered_before_the_last_flush_interval(
        tmp_path: Path, upstream: Proc, database_url: str, run_id: str):
    schema = f"{run_id}_kill"
    flush_s = 0.5
    config = gateway_config(tmp_path, upstream.url, database_url=database_url, schema=schema,
                            store={"ledger_flush_interval_s": flush_s})
    path = write_config(tmp_path, config, "kill")
    gw = start_replica(tmp_path, path)
    key = create_key(tmp_path, path, "acme")["key"]
    wait_until(lambda: accepted(gw.url, key), 5)
    stop = asyncio.Event()
    load = asyncio.create_task(hammer([gw.url], key, chat_body(), duration_s=20, concurrency=8, stop=stop))
    await asyncio.sleep(2.0)
    gw.popen.kill()  # SIGKILL: no shutdown hook runs
    killed_at = time.monotonic()
    stop.set()
    results = await load
    gw.popen.wait(5)
    rows = await _ledger_rows(database_url, schema)
    answered = [r for r in results if r.status == 200]
    before = [r for r in answered if r.done_s < killed_at - flush_s]
    assert len(before) > 200
    missing = [r.request_id for r in before if r.request_id not in rows]
    assert missing == [], f"{len(missing)} of {len(before)} answered before the last interval are missing"
    assert set(rows.values()) == {1}  # and none twice
    assert set(rows) <= {r.request_id for r in results}
