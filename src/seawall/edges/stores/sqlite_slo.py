"""SQLite SLO store (the embedded default): counters, alert state and incidents, next to the ledger.

Every call runs in a worker thread (one connection per thread, WAL), so the event loop never waits
on disk. The contract is :class:`seawall.slo.store.SloStore`.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path
from typing import Any

from seawall.edges.stores.sqlite import SqliteConnections
from seawall.slo.store import CountRow, Incident, IncidentUpdate, WindowRow

__all__ = ["SqliteSloStore"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS slo_counts (
    resolution_s INTEGER NOT NULL,
    bucket_s     INTEGER NOT NULL,
    component    TEXT NOT NULL,
    tier         TEXT NOT NULL,
    total        INTEGER NOT NULL,
    bad          INTEGER NOT NULL,
    lat_total    INTEGER NOT NULL,
    lat_slow     INTEGER NOT NULL,
    lat_sum_s    REAL NOT NULL,
    PRIMARY KEY (resolution_s, bucket_s, component, tier)
);
CREATE TABLE IF NOT EXISTS slo_alerts (
    alert_key  TEXT PRIMARY KEY,
    firing     INTEGER NOT NULL,
    changed_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS incidents (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    status      TEXT NOT NULL,
    impact      TEXT NOT NULL,
    components  TEXT NOT NULL,
    alert_key   TEXT,
    created_at  REAL NOT NULL,
    updated_at  REAL NOT NULL,
    resolved_at REAL
);
CREATE UNIQUE INDEX IF NOT EXISTS incidents_open_alert ON incidents (alert_key)
    WHERE resolved_at IS NULL AND alert_key IS NOT NULL;
CREATE INDEX IF NOT EXISTS incidents_updated ON incidents (updated_at);
CREATE TABLE IF NOT EXISTS incident_updates (
    id          TEXT PRIMARY KEY,
    incident_id TEXT NOT NULL,
    status      TEXT NOT NULL,
    body        TEXT NOT NULL,
    created_at  REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS incident_updates_incident ON incident_updates (incident_id);
"""

_ADD = """
INSERT INTO slo_counts VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (resolution_s, bucket_s, component, tier) DO UPDATE SET
    total = total + excluded.total, bad = bad + excluded.bad, lat_total = lat_total + excluded.lat_total,
    lat_slow = lat_slow + excluded.lat_slow, lat_sum_s = lat_sum_s + excluded.lat_sum_s
"""
_INCIDENT_COLS = "id, name, status, impact, components, alert_key, created_at, updated_at, resolved_at"


class SqliteSloStore:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._conn = SqliteConnections(self.path)
        self._conn().executescript(_SCHEMA)

    # -- counters --------------------------------------------------------------------------
    def add_sync(self, rows: list[CountRow]) -> None:
        with self._conn.write() as conn:
            conn.executemany(_ADD, [_fields(r) for r in rows])

    def windows_sync(self, now_s: float, windows_s: list[int], resolution_s: int) -> list[WindowRow]:
        if not windows_s:
            return []
        sums = ", ".join(
            f"SUM(CASE WHEN bucket_s >= ? THEN {c} ELSE 0 END)" for _ in windows_s
            for c in ("total", "bad", "lat_total", "lat_slow"))
        params: list[Any] = [now_s - w for w in windows_s for _ in range(4)]
        sql = (f"SELECT component, tier, {sums} FROM slo_counts WHERE resolution_s = ? AND bucket_s >= ?"
               " GROUP BY component, tier")
        rows = self._conn().execute(sql, [*params, resolution_s, now_s - max(windows_s)]).fetchall()
        return _window_rows(rows, windows_s)

    def buckets_sync(self, resolution_s: int, since_s: float, component: str | None = None) -> list[CountRow]:
        rows = self._conn().execute(
            "SELECT * FROM slo_counts WHERE resolution_s = ? AND bucket_s >= ? AND (? IS NULL OR component = ?)"
            " ORDER BY bucket_s", (resolution_s, since_s, component, component)).fetchall()
        return [CountRow(*r) for r in rows]

    def purge_sync(self, resolution_s: int, before_s: float) -> int:
        cur = self._conn().execute("DELETE FROM slo_counts WHERE resolution_s = ? AND bucket_s < ?",
                                   (resolution_s, before_s))
        return int(cur.rowcount)

    # -- alerts ----------------------------------------------------------------------------
    def claim_sync(self, alert_key: str, firing: bool, at_s: float) -> bool:
        conn = self._conn()
        if firing:
            cur = conn.execute(
                "INSERT INTO slo_alerts VALUES (?, 1, ?) ON CONFLICT (alert_key) DO UPDATE SET firing = 1,"
                " changed_at = excluded.changed_at WHERE slo_alerts.firing = 0", (alert_key, at_s))
        else:
            cur = conn.execute("UPDATE slo_alerts SET firing = 0, changed_at = ? WHERE alert_key = ? AND firing = 1",
                               (at_s, alert_key))
        return cur.rowcount > 0

    def firing_sync(self) -> dict[str, float]:
        rows = self._conn().execute("SELECT alert_key, changed_at FROM slo_alerts WHERE firing = 1").fetchall()
        return {str(k): float(t) for k, t in rows}

    # -- incidents -------------------------------------------------------------------------
    def open_incident_sync(self, incident: Incident, first: IncidentUpdate) -> bool:
        with self._conn.write() as conn:
            try:
                conn.execute(f"INSERT INTO incidents ({_INCIDENT_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                             (incident.id, incident.name, incident.status, incident.impact,
                              json.dumps(incident.components), incident.alert_key, incident.created_at,
                              incident.updated_at, incident.resolved_at))
            except sqlite3.IntegrityError:  # an unresolved incident for this alert exists: nothing written
                return False
            _insert_update(conn, first)
        return True

    def add_update_sync(self, update: IncidentUpdate) -> Incident | None:
        with self._conn.write() as conn:
            resolved = update.created_at if update.status == "resolved" else None
            cur = conn.execute("UPDATE incidents SET status = ?, updated_at = ?, resolved_at = COALESCE(resolved_at, ?)"
                               " WHERE id = ?", (update.status, update.created_at, resolved, update.incident_id))
            if cur.rowcount == 0:  # no such incident: nothing written
                return None
            _insert_update(conn, update)
        return self._load(f"SELECT {_INCIDENT_COLS} FROM incidents WHERE id = ?", (update.incident_id,))[0]

    def incident_for_alert_sync(self, alert_key: str) -> Incident | None:
        found = self._load(f"SELECT {_INCIDENT_COLS} FROM incidents WHERE alert_key = ? AND resolved_at IS NULL",
                           (alert_key,))
        return found[0] if found else None

    def incidents_sync(self, since_s: float, limit: int = 50) -> list[Incident]:
        return self._load(f"SELECT {_INCIDENT_COLS} FROM incidents WHERE resolved_at IS NULL OR updated_at >= ?"
                          " ORDER BY created_at DESC LIMIT ?", (since_s, limit))

    def _load(self, sql: str, params: tuple[Any, ...]) -> list[Incident]:
        conn = self._conn()
        rows = conn.execute(sql, params).fetchall()
        if not rows:
            return []
        ids = [r[0] for r in rows]
        marks = ", ".join("?" * len(ids))
        updates: dict[str, list[IncidentUpdate]] = {i: [] for i in ids}
        for u in conn.execute(f"SELECT id, incident_id, status, body, created_at FROM incident_updates"
                              f" WHERE incident_id IN ({marks}) ORDER BY created_at DESC, id DESC", ids):
            updates[u[1]].append(IncidentUpdate(*u))
        return [Incident(id=r[0], name=r[1], status=r[2], impact=r[3], components=json.loads(r[4]), alert_key=r[5],
                         created_at=r[6], updated_at=r[7], resolved_at=r[8], updates=updates[r[0]]) for r in rows]

    # -- async API (SloStore) ----------------------------------------------------------------
    async def add(self, rows: list[CountRow]) -> None:
        if rows:
            await asyncio.to_thread(self.add_sync, rows)

    async def windows(self, now_s: float, windows_s: list[int], resolution_s: int) -> list[WindowRow]:
        return await asyncio.to_thread(self.windows_sync, now_s, windows_s, resolution_s)

    async def buckets(self, resolution_s: int, since_s: float, component: str | None = None) -> list[CountRow]:
        return await asyncio.to_thread(self.buckets_sync, resolution_s, since_s, component)

    async def purge(self, resolution_s: int, before_s: float) -> int:
        return await asyncio.to_thread(self.purge_sync, resolution_s, before_s)

    async def claim(self, alert_key: str, firing: bool, at_s: float) -> bool:
        return await asyncio.to_thread(self.claim_sync, alert_key, firing, at_s)

    async def firing(self) -> dict[str, float]:
        return await asyncio.to_thread(self.firing_sync)

    async def open_incident(self, incident: Incident, first: IncidentUpdate) -> bool:
        return await asyncio.to_thread(self.open_incident_sync, incident, first)

    async def add_update(self, update: IncidentUpdate) -> Incident | None:
        return await asyncio.to_thread(self.add_update_sync, update)

    async def incident_for_alert(self, alert_key: str) -> Incident | None:
        return await asyncio.to_thread(self.incident_for_alert_sync, alert_key)

    async def incidents(self, since_s: float, limit: int = 50) -> list[Incident]:
        return await asyncio.to_thread(self.incidents_sync, since_s, limit)

    async def close(self) -> None:
        return None


def _fields(row: CountRow) -> tuple[Any, ...]:
    return (row.resolution_s, row.bucket_s, row.component, row.tier, row.total, row.bad, row.lat_total,
            row.lat_slow, row.lat_sum_s)


def _insert_update(conn: sqlite3.Connection, u: IncidentUpdate) -> None:
    conn.execute("INSERT INTO incident_updates VALUES (?, ?, ?, ?, ?)",
                 (u.id, u.incident_id, u.status, u.body, u.created_at))


def _window_rows(rows: list[Any], windows_s: list[int]) -> list[WindowRow]:
    out = []
    for r in rows:
        for i, w in enumerate(windows_s):
            total, bad, lat_total, lat_slow = (int(v or 0) for v in r[2 + 4 * i: 6 + 4 * i])
            out.append(WindowRow(r[0], r[1], w, total, bad, lat_total, lat_slow))
    return out
