"""The ledger's guard columns on a real PostgreSQL: written, summarised by ``seawall usage``."""

import asyncio

import asyncpg
import pytest

from seawall.edges.ledger import LedgerRecord, guard_columns
from seawall.edges.stores.postgres_ledger import PostgresLedgerSink, summarise
from seawall.policies.guard import GuardRecord

pytestmark = pytest.mark.e2e


async def test_guard_columns_round_trip_and_summarise(database_url, schema):
    sink = PostgresLedgerSink(database_url, schema=schema)
    blocked = GuardRecord("block", "1", "injection/ignore_instructions", 0.95, 0.0002, False)
    degraded = GuardRecord("flag", "1", "jailbreak/stay_in_character", 0.35, 0.3, True, "stage2_timeout")
    recs = [LedgerRecord(f"g{i}", 1_700_000_000.0 + i, f"req{i}", "t", "k", "free", "chat", "d", 1, 1, 0.1, None,
                         200, "ok", **guard_columns(g)) for i, g in enumerate([blocked, degraded, None])]
    try:
        await sink.write(recs)
    finally:
        await sink.close()
    conn = await asyncpg.connect(database_url, server_settings={"search_path": schema})
    try:
        rows = await conn.fetch("SELECT record_id, guard_action, guard_degraded, guard_rules FROM usage"
                                " WHERE record_id LIKE 'g%' ORDER BY record_id")
    finally:
        await conn.close()
    assert [tuple(r) for r in rows] == [("g0", "block", False, "injection/ignore_instructions"),
                                        ("g1", "flag", True, "jailbreak/stay_in_character"), ("g2", None, None, None)]
    summary = await asyncio.to_thread(summarise, database_url, schema, ("tier",))
    assert [(r["tier"], r["requests"], r["guard_blocked"], r["guard_degraded"]) for r in summary] == [("free", 3, 1, 1)]
