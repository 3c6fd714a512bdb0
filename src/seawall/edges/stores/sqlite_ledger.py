"""SQLite ledger sink (WAL): batched ``INSERT OR IGNORE`` keyed on ``record_id``."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

from seawall.edges.ledger import LedgerRecord
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
    reason      TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS usage_ts ON usage (ts);
"""
_INSERT = "INSERT OR IGNORE INTO usage VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"


class SqliteLedgerSink:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._conn = SqliteConnections(self.path)
        self._conn().executescript(_SCHEMA)

    def write_sync(self, records: list[LedgerRecord]) -> None:
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.executemany(_INSERT, [_row(r) for r in records])
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    async def write(self, records: list[LedgerRecord]) -> None:
        await asyncio.to_thread(self.write_sync, records)

    def count(self) -> int:
        return int(self._conn().execute("SELECT count(*) FROM usage").fetchone()[0])


def _row(r: LedgerRecord) -> tuple[Any, ...]:
    return (r.record_id, r.ts, r.request_id, r.tenant, r.key_id, r.tier, r.model, r.deployments,
            r.tokens_in, r.tokens_out, r.latency_s, r.ttft_s, r.status, r.reason)


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
               f" avg(latency_s) FROM usage WHERE ts >= ? GROUP BY {', '.join(names)}"
               f" ORDER BY {', '.join(names)}")
        rows = conn.execute(sql, (since_ts or 0.0,)).fetchall()
    finally:
        conn.close()
    out = []
    for row in rows:
        item = dict(zip(names, row[: len(names)], strict=True))
        requests, errors, tin, tout, avg_latency = row[len(names):]
        item.update(requests=requests, errors=errors, tokens_in=tin or 0, tokens_out=tout or 0,
                    avg_latency_s=round(avg_latency or 0.0, 4))
        out.append(item)
    return out
