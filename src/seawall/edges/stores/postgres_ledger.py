"""PostgreSQL ledger sink: one statement per batch, idempotent on ``record_id``.

A batch goes in as one ``INSERT ... SELECT FROM unnest($1::text[], ...) ON CONFLICT (record_id) DO
NOTHING``: one round trip and one plan for the whole batch, where ``executemany`` pays a
round-trip-sized cost per row (see docs/decisions.md for the measurement). ``ON CONFLICT DO
NOTHING`` makes a replay of the spill file after an outage, or after a crash between "committed"
and "spill truncated", harmless. The pool connects lazily and reconnects by itself, so a sink
created while the database is down starts working when it comes back; until then the ledger
spills (see :mod:`seawall.edges.ledger`).
"""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg

from seawall.edges.ledger import LedgerRecord
from seawall.edges.stores.postgres import connect, ensure_schema, schema_pool

__all__ = ["PostgresLedgerSink", "summarise"]

_DDL = """
CREATE TABLE IF NOT EXISTS {s}.usage (
    record_id   text PRIMARY KEY,
    ts          double precision NOT NULL,
    request_id  text NOT NULL,
    tenant      text,
    key_id      text,
    tier        text,
    model       text,
    deployments text NOT NULL,
    tokens_in   integer NOT NULL,
    tokens_out  integer NOT NULL,
    latency_s   double precision NOT NULL,
    ttft_s      double precision,
    status      integer NOT NULL,
    reason      text NOT NULL
);
CREATE INDEX IF NOT EXISTS usage_ts ON {s}.usage (ts);
ALTER TABLE {s}.usage ADD COLUMN IF NOT EXISTS guard_action text, ADD COLUMN IF NOT EXISTS guard_stage text,
    ADD COLUMN IF NOT EXISTS guard_rules text, ADD COLUMN IF NOT EXISTS guard_score double precision,
    ADD COLUMN IF NOT EXISTS guard_latency_s double precision, ADD COLUMN IF NOT EXISTS guard_degraded boolean,
    ADD COLUMN IF NOT EXISTS guard_output text;
"""

_INSERT = """
INSERT INTO usage SELECT * FROM unnest($1::text[], $2::float8[], $3::text[], $4::text[], $5::text[],
    $6::text[], $7::text[], $8::text[], $9::int4[], $10::int4[], $11::float8[], $12::float8[], $13::int4[],
    $14::text[], $15::text[], $16::text[], $17::text[], $18::float8[], $19::float8[], $20::bool[], $21::text[])
ON CONFLICT (record_id) DO NOTHING
"""

_FIELDS = LedgerRecord.__struct_fields__


class PostgresLedgerSink:
    def __init__(self, url: str, *, schema: str = "seawall", timeout_s: float = 2.0) -> None:
        self.url = url
        self.schema = schema
        self.timeout_s = timeout_s
        self._pool: asyncpg.Pool | None = None

    async def _acquire_pool(self) -> asyncpg.Pool:
        if self._pool is None:
            self._pool = await schema_pool(self.url, self.schema, _DDL, timeout_s=self.timeout_s,
                                           command_timeout_s=self.timeout_s * 5, max_size=2,
                                           application_name="seawall-ledger")
        return self._pool

    async def write(self, records: list[LedgerRecord]) -> None:
        if not records:
            return
        pool = await self._acquire_pool()
        columns = [[getattr(r, f) for r in records] for f in _FIELDS]
        async with asyncio.timeout(self.timeout_s * 5):
            await pool.execute(_INSERT, *columns)

    async def count(self) -> int:
        pool = await self._acquire_pool()
        return int(await pool.fetchval("SELECT count(*) FROM usage"))

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None


async def _summarise(url: str, schema: str, by: tuple[str, ...], since_ts: float | None,
                     timeout_s: float) -> list[dict[str, Any]]:
    allowed = {"tenant": "tenant", "model": "model", "tier": "tier",
               "day": "to_char(to_timestamp(ts) AT TIME ZONE 'UTC', 'YYYY-MM-DD') AS day"}
    cols = [allowed[b] for b in by]
    names = list(by)
    sql = (f"SELECT {', '.join(cols)}, count(*), count(*) FILTER (WHERE status >= 400), sum(tokens_in),"
           f" sum(tokens_out), avg(latency_s), count(*) FILTER (WHERE guard_action IN ('block', 'unavailable')"
           f" OR guard_output IS NOT NULL), count(*) FILTER (WHERE guard_degraded) FROM usage WHERE ts >= $1"
           f" GROUP BY {', '.join(names)}"
           f" ORDER BY {', '.join(names)}")
    conn = await connect(url, schema, timeout_s)
    try:
        await ensure_schema(conn, schema, _DDL)
        rows = await conn.fetch(sql, since_ts or 0.0, timeout=timeout_s * 15)
    finally:
        await conn.close()
    out = []
    for row in rows:
        item = {n: row[i] for i, n in enumerate(names)}
        requests, errors, tin, tout, avg_latency, blocked, degraded = (row[len(names) + i] for i in range(7))
        item.update(requests=requests, errors=errors, tokens_in=int(tin or 0), tokens_out=int(tout or 0),
                    avg_latency_s=round(float(avg_latency or 0.0), 4), guard_blocked=int(blocked or 0),
                    guard_degraded=int(degraded or 0))
        out.append(item)
    return out


def summarise(url: str, schema: str = "seawall", by: tuple[str, ...] = ("tenant", "model", "tier", "day"),
              since_ts: float | None = None, timeout_s: float = 2.0) -> list[dict[str, Any]]:
    """Requests, errors, tokens and latency grouped by ``by``, like the SQLite ledger's summary."""
    return asyncio.run(_summarise(url, schema, by, since_ts, timeout_s))
