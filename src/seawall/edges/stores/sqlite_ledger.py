"""SQLite ledger sink (WAL): batched ``INSERT OR IGNORE`` keyed on ``record_id``."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

from seawall.edges.ledger import GUARD_COLUMNS, LedgerRecord
from seawall.edges.stores.sqlite import SqliteConnections

__all__ = ["SqliteLedgerSink", "summarise"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS usage (
    record_id   TEXT PRIMARY KEY,
    ts          REAL NOT NULL,
    request_id  TEXT NOT NULL,
    tenant      TEXT,
    key_id      TEXT,
    tier        TEXT,
    model       TEXT,
    deployments TEXT NOT NULL,
    tokens_in   INTEGER NOT NULL,
    tokens_out  INTEGER NOT NULL,
    latency_s   REAL NOT NULL,
    ttft_s      REAL,
    status      INTEGER NOT NULL,
    reason      TEXT NOT NULL,
    guard_action TEXT, guard_stage TEXT, guard_rules TEXT, guard_score REAL, guard_latency_s REAL,
    guard_degraded INTEGER, guard_output TEXT
);
CREATE INDEX IF NOT EXISTS usage_ts ON usage (ts);
"""
_INSERT = f"INSERT OR IGNORE INTO usage VALUES ({', '.join(['?'] * len(LedgerRecord.__struct_fields__))})"


class SqliteLedgerSink:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._conn = SqliteConnections(self.path)
        conn = self._conn()
        conn.executescript(_SCHEMA)
        have = {row[1] for row in conn.execute("PRAGMA table_info(usage)")}
        for name, sql_type, _ in GUARD_COLUMNS:  # a ledger made before the guard existed
            if name not in have:
                conn.execute(f"ALTER TABLE usage ADD COLUMN {name} {sql_type}")

    def write_sync(self, records: list[LedgerRecord]) -> None:
        with self._conn.write() as conn:
            conn.executemany(_INSERT, [_row(r) for r in records])

    async def write(self, records: list[LedgerRecord]) -> None:
        await asyncio.to_thread(self.write_sync, records)

    def count(self) -> int:
        return int(self._conn().execute("SELECT count(*) FROM usage").fetchone()[0])


def _row(r: LedgerRecord) -> tuple[Any, ...]:
    return (r.record_id, r.ts, r.request_id, r.tenant, r.key_id, r.tier, r.model, r.deployments,
            r.tokens_in, r.tokens_out, r.latency_s, r.ttft_s, r.status, r.reason, r.guard_action, r.guard_stage,
            r.guard_rules, r.guard_score, r.guard_latency_s,
            None if r.guard_degraded is None else int(r.guard_degraded), r.guard_output)


def summarise(path: str | Path, by: tuple[str, ...] = ("tenant", "model", "tier", "day"),
              since_ts: float | None = None) -> list[dict[str, Any]]:
    """Requests, errors, tokens and latency grouped by ``by`` (any of tenant, model, tier, day)."""
    allowed = {"tenant": "tenant", "model": "model", "tier": "tier",
               "day": "date(ts, 'unixepoch') AS day"}
    cols = [allowed[b] for b in by]
    names = list(by)
    conn = sqlite3.connect(Path(path), timeout=5.0)
    try:
        sql = (f"SELECT {', '.join(cols)}, count(*), sum(status >= 400), sum(tokens_in), sum(tokens_out),"
               f" avg(latency_s), sum(guard_action IN ('block', 'unavailable') OR guard_output IS NOT NULL),"
               f" sum(coalesce(guard_degraded, 0)) FROM usage WHERE ts >= ? GROUP BY {', '.join(names)}"
               f" ORDER BY {', '.join(names)}")
        rows = conn.execute(sql, (since_ts or 0.0,)).fetchall()
    finally:
        conn.close()
    out = []
    for row in rows:
        item = dict(zip(names, row[: len(names)], strict=True))
        requests, errors, tin, tout, avg_latency, guard_blocked, guard_degraded = row[len(names):]
        item.update(requests=requests, errors=errors, tokens_in=tin or 0, tokens_out=tout or 0,
                    avg_latency_s=round(avg_latency or 0.0, 4), guard_blocked=guard_blocked or 0,
                    guard_degraded=guard_degraded or 0)
        out.append(item)
    return out
