"""Keys and the ledger on a real PostgreSQL: the KeyStore contract, changes pushed by NOTIFY to a
running refresher, and an idempotent batch insert with a summary like SQLite's."""

from __future__ import annotations

import asyncio
import time

import pytest

from seawall.auth.keys import KeyRecord, KeyRefresher, hash_key, new_key
from seawall.core.types import Criticality
from seawall.edges.ledger import LedgerRecord
from seawall.edges.stores.postgres import PostgresKeyStore
from seawall.edges.stores.postgres_ledger import PostgresLedgerSink, summarise
from seawall.env import SystemClock, SystemRng

pytestmark = pytest.mark.e2e


def _record(tenant: str = "acme", tier: str = "api", models: frozenset[str] | None = None) -> tuple[KeyRecord, str]:
    key_id, key = new_key(SystemRng().token_hex)
    return KeyRecord(key_id, hash_key(key), tenant, tier, models, time.time(), name="t"), key


async def _until(predicate, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    for _ in range(int(timeout_s / 0.005)):
        if predicate() or time.monotonic() > deadline:
            return
        await asyncio.sleep(0.005)


def test_key_store_contract_from_the_cli_side(database_url, schema):
    store = PostgresKeyStore(database_url, schema=schema)
    assert store.count() == 0
    v0 = store.version_sync()
    rec, _ = _record(models=frozenset({"a", "b"}))
    store.insert(rec)
    version, records = store.load_sync()
    assert version > v0 and records == [rec]
    assert store.revoke(rec.key_id, 123.0) and not store.revoke(rec.key_id, 124.0)
    version2, records = store.load_sync()
    assert version2 > version and records[0].revoked_at == 123.0 and store.count() == 1


async def test_notify_reaches_a_running_refresher_at_once(database_url, schema):
    clock = SystemClock()
    store = PostgresKeyStore(database_url, schema=schema)
    await asyncio.to_thread(store.count)  # creates the schema
    crit = {"api": Criticality.CRITICAL}.__getitem__
    refresher = KeyRefresher(store, crit, clock=clock, interval_s=30.0)  # polling far too slow to matter
    await refresher.refresh(force=True)
    refresher.start()
    store.start_listener(refresher.poke)
    try:
        for _ in range(100):
            if store.listening:
                break
            await asyncio.sleep(0.02)
        assert store.listening
        rec, key = _record()
        t0 = time.monotonic()
        await asyncio.to_thread(store.insert, rec)
        await _until(lambda: refresher.snapshot.verify(key) is not None, 2.0)
        took = time.monotonic() - t0
        assert refresher.snapshot.verify(key) is not None and took < 1.0, took
        await asyncio.to_thread(store.revoke, rec.key_id, time.time())
        t0 = time.monotonic()
        await _until(lambda: refresher.snapshot.verify(key) is None, 2.0)
        assert refresher.snapshot.verify(key) is None and time.monotonic() - t0 < 1.0
        assert refresher.state()["status"] == "ok"
    finally:
        await refresher.stop()
        await store.close()


async def test_ledger_sink_is_idempotent_and_summarises(database_url, schema):
    sink = PostgresLedgerSink(database_url, schema=schema)
    day = 1_700_000_000.0
    recs = [LedgerRecord(f"r{i}", day + i, f"req{i}", "a" if i % 2 else "b", "k", "api", "m", "d1,d2",
                         10, 5, 0.1, None if i % 3 else 0.05, 200 if i % 4 else 503, "ok" if i % 4 else "overload")
            for i in range(20)]
    try:
        await sink.write(recs)
        await sink.write(recs[:10])  # a replay after a crash: ignored
        assert await sink.count() == 20
    finally:
        await sink.close()
    rows = await asyncio.to_thread(summarise, database_url, schema, ("tenant", "day"))
    assert [(r["tenant"], r["day"], r["requests"], r["errors"], r["tokens_in"]) for r in rows] == [
        ("a", "2023-11-14", 10, 0, 100), ("b", "2023-11-14", 10, 5, 100)]
