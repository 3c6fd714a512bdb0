"""PostgreSQL SLO store: the same contract as the SQLite one, shared by every replica.

A flush is one ``INSERT ... SELECT FROM unnest(...) ON CONFLICT DO UPDATE`` adding to the buckets
(one round trip per batch, as the ledger's). Alert transitions are conditional upserts, so one
replica wins each; an open incident per alert is a partial unique index.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import asyncpg

from seawall.edges.stores.postgres import schema_pool
from seawall.slo.store import CountRow, Incident, IncidentUpdate, WindowRow

__all__ = ["PostgresSloStore"]

_DDL = """
CREATE TABLE IF NOT EXISTS {s}.slo_counts (
    resolution_s integer NOT NULL,
    bucket_s     bigint NOT NULL,
    component    text NOT NULL,
    tier         text NOT NULL,
    total        bigint NOT NULL,
    bad          bigint NOT NULL,
    lat_total    bigint NOT NULL,
    lat_slow     bigint NOT NULL,
    lat_sum_s    double precision NOT NULL,
    PRIMARY KEY (resolution_s, bucket_s, component, tier)
);
CREATE TABLE IF NOT EXISTS {s}.slo_alerts (
    alert_key  text PRIMARY KEY,
    firing     boolean NOT NULL,
    changed_at double precision NOT NULL
);
CREATE TABLE IF NOT EXISTS {s}.incidents (
    id          text PRIMARY KEY,
    name        text NOT NULL,
    status      text NOT NULL,
    impact      text NOT NULL,
    components  text NOT NULL,
    alert_key   text,
    created_at  double precision NOT NULL,
    updated_at  double precision NOT NULL,
    resolved_at double precision
);
CREATE UNIQUE INDEX IF NOT EXISTS incidents_open_alert ON {s}.incidents (alert_key)
    WHERE resolved_at IS NULL AND alert_key IS NOT NULL;
CREATE INDEX IF NOT EXISTS incidents_updated ON {s}.incidents (updated_at);
CREATE TABLE IF NOT EXISTS {s}.incident_updates (
    id          text PRIMARY KEY,
    incident_id text NOT NULL,
    status      text NOT NULL,
    body        text NOT NULL,
    created_at  double precision NOT NULL
);
CREATE INDEX IF NOT EXISTS incident_updates_incident ON {s}.incident_updates (incident_id);
"""

_ADD = """
INSERT INTO slo_counts AS c SELECT * FROM unnest($1::int4[], $2::int8[], $3::text[], $4::text[], $5::int8[],
    $6::int8[], $7::int8[], $8::int8[], $9::float8[])
ON CONFLICT (resolution_s, bucket_s, component, tier) DO UPDATE SET
    total = c.total + excluded.total, bad = c.bad + excluded.bad, lat_total = c.lat_total + excluded.lat_total,
    lat_slow = c.lat_slow + excluded.lat_slow, lat_sum_s = c.lat_sum_s + excluded.lat_sum_s
"""
_INCIDENT_COLS = "id, name, status, impact, components, alert_key, created_at, updated_at, resolved_at"


class PostgresSloStore:
    def __init__(self, url: str, *, schema: str = "seawall", timeout_s: float = 2.0) -> None:
        self.url = url
        self.schema = schema
        self.timeout_s = timeout_s
        self._pool: asyncpg.Pool | None = None
        self._lock = asyncio.Lock()

    async def _acquire_pool(self) -> asyncpg.Pool:
        async with self._lock:
            if self._pool is None:
                self._pool = await schema_pool(self.url, self.schema, _DDL, timeout_s=self.timeout_s,
                                               command_timeout_s=self.timeout_s * 5, max_size=2,
                                               application_name="seawall-slo")
        return self._pool

    async def add(self, rows: list[CountRow]) -> None:
        if not rows:
            return
        pool = await self._acquire_pool()
        columns = [[getattr(r, f) for r in rows] for f in CountRow.__struct_fields__]
        await pool.execute(_ADD, *columns)

    async def windows(self, now_s: float, windows_s: list[int], resolution_s: int) -> list[WindowRow]:
        if not windows_s:
            return []
        pool = await self._acquire_pool()
        sums = ", ".join(f"COALESCE(SUM({c}) FILTER (WHERE bucket_s >= ${3 + i}), 0)"
                         for i, _ in enumerate(windows_s) for c in ("total", "bad", "lat_total", "lat_slow"))
        sql = (f"SELECT component, tier, {sums} FROM slo_counts WHERE resolution_s = $1 AND bucket_s >= $2"
               " GROUP BY component, tier")
        starts = [int(now_s - w) for w in windows_s]
        rows = await pool.fetch(sql, resolution_s, min(starts), *starts)
        out = []
        for r in rows:
            for i, w in enumerate(windows_s):
                total, bad, lat_total, lat_slow = (int(r[2 + 4 * i + k]) for k in range(4))
                out.append(WindowRow(r[0], r[1], w, total, bad, lat_total, lat_slow))
        return out

    async def buckets(self, resolution_s: int, since_s: float, component: str | None = None) -> list[CountRow]:
        pool = await self._acquire_pool()
        rows = await pool.fetch("SELECT * FROM slo_counts WHERE resolution_s = $1 AND bucket_s >= $2"
                                " AND ($3::text IS NULL OR component = $3) ORDER BY bucket_s",
                                resolution_s, int(since_s), component)
        return [CountRow(*r) for r in rows]

    async def purge(self, resolution_s: int, before_s: float) -> int:
        pool = await self._acquire_pool()
        status = await pool.execute("DELETE FROM slo_counts WHERE resolution_s = $1 AND bucket_s < $2",
                                    resolution_s, int(before_s))
        return int(status.rsplit(" ", 1)[-1])

    async def claim(self, alert_key: str, firing: bool, at_s: float) -> bool:
        pool = await self._acquire_pool()
        if firing:
            row = await pool.fetchval(
                "INSERT INTO slo_alerts AS a VALUES ($1, true, $2) ON CONFLICT (alert_key) DO UPDATE SET firing = true,"
                " changed_at = excluded.changed_at WHERE NOT a.firing RETURNING 1", alert_key, at_s)
        else:
            row = await pool.fetchval("UPDATE slo_alerts SET firing = false, changed_at = $2 WHERE alert_key = $1"
                                      " AND firing RETURNING 1", alert_key, at_s)
        return row is not None

    async def firing(self) -> dict[str, float]:
        pool = await self._acquire_pool()
        rows = await pool.fetch("SELECT alert_key, changed_at FROM slo_alerts WHERE firing")
        return {r[0]: float(r[1]) for r in rows}

    async def open_incident(self, incident: Incident, first: IncidentUpdate) -> bool:
        pool = await self._acquire_pool()
        async with pool.acquire() as conn, conn.transaction():
            made = await conn.fetchval(
                f"INSERT INTO incidents ({_INCIDENT_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
                " ON CONFLICT (alert_key) WHERE resolved_at IS NULL AND alert_key IS NOT NULL DO NOTHING RETURNING 1",
                incident.id, incident.name, incident.status, incident.impact, json.dumps(incident.components),
                incident.alert_key, incident.created_at, incident.updated_at, incident.resolved_at)
            if made is None:
                return False
            await _insert_update(conn, first)
        return True

    async def add_update(self, update: IncidentUpdate) -> Incident | None:
        pool = await self._acquire_pool()
        async with pool.acquire() as conn:
            async with conn.transaction():
                resolved = update.created_at if update.status == "resolved" else None
                found = await conn.fetchval(
                    "UPDATE incidents SET status = $1, updated_at = $2, resolved_at = COALESCE(resolved_at, $3)"
                    " WHERE id = $4 RETURNING 1", update.status, update.created_at, resolved, update.incident_id)
                if found is None:
                    return None
                await _insert_update(conn, update)
            loaded = await _load(conn, f"SELECT {_INCIDENT_COLS} FROM incidents WHERE id = $1", update.incident_id)
        return loaded[0]

    async def incident_for_alert(self, alert_key: str) -> Incident | None:
        pool = await self._acquire_pool()
        async with pool.acquire() as conn:
            found = await _load(conn, f"SELECT {_INCIDENT_COLS} FROM incidents WHERE alert_key = $1"
                                " AND resolved_at IS NULL", alert_key)
        return found[0] if found else None

    async def incidents(self, since_s: float, limit: int = 50) -> list[Incident]:
        pool = await self._acquire_pool()
        async with pool.acquire() as conn:
            return await _load(conn, f"SELECT {_INCIDENT_COLS} FROM incidents WHERE resolved_at IS NULL"
                               " OR updated_at >= $1 ORDER BY created_at DESC LIMIT $2", since_s, limit)

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None


async def _insert_update(conn: Any, u: IncidentUpdate) -> None:
    await conn.execute("INSERT INTO incident_updates VALUES ($1, $2, $3, $4, $5)",
                       u.id, u.incident_id, u.status, u.body, u.created_at)


async def _load(conn: Any, sql: str, *params: Any) -> list[Incident]:
    rows = await conn.fetch(sql, *params)
    if not rows:
        return []
    ids = [r[0] for r in rows]
    updates: dict[str, list[IncidentUpdate]] = {i: [] for i in ids}
    for u in await conn.fetch("SELECT id, incident_id, status, body, created_at FROM incident_updates"
                              " WHERE incident_id = ANY($1::text[]) ORDER BY created_at DESC, id DESC", ids):
        updates[u[1]].append(IncidentUpdate(u[0], u[1], u[2], u[3], float(u[4])))
    return [Incident(id=r[0], name=r[1], status=r[2], impact=r[3], components=json.loads(r[4]), alert_key=r[5],
                     created_at=float(r[6]), updated_at=float(r[7]),
                     resolved_at=None if r[8] is None else float(r[8]), updates=updates[r[0]]) for r in rows]
