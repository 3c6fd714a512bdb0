"""SQLite key store (WAL), the embedded default.

Writes come from the CLI (``seawall keys ...``), possibly while a gateway is serving; a trigger
bumps ``meta.version`` on every change so the gateway's refresher can poll one integer and reload
only when something changed. Reads run in a worker thread so the event loop never waits on disk.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

from seawall.auth.keys import KeyRecord

__all__ = ["SqliteConnections", "SqliteKeyStore"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS keys (
    key_id     TEXT PRIMARY KEY,
    key_hash   TEXT NOT NULL,
    tenant     TEXT NOT NULL,
    tier       TEXT NOT NULL,
    models     TEXT,
    name       TEXT,
    created_at REAL NOT NULL,
    revoked_at REAL
);
CREATE TABLE IF NOT EXISTS meta (id INTEGER PRIMARY KEY CHECK (id = 1), version INTEGER NOT NULL);
INSERT OR IGNORE INTO meta (id, version) VALUES (1, 0);
CREATE TRIGGER IF NOT EXISTS keys_ins AFTER INSERT ON keys
    BEGIN UPDATE meta SET version = version + 1 WHERE id = 1; END;
CREATE TRIGGER IF NOT EXISTS keys_upd AFTER UPDATE ON keys
    BEGIN UPDATE meta SET version = version + 1 WHERE id = 1; END;
CREATE TRIGGER IF NOT EXISTS keys_del AFTER DELETE ON keys
    BEGIN UPDATE meta SET version = version + 1 WHERE id = 1; END;
"""


class SqliteConnections:
    """One connection per thread (sqlite3 connections must stay on their thread), in WAL mode with
    autocommit and a busy timeout, so the CLI can write while a gateway reads."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()

    def __call__(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=5.0, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA busy_timeout=5000")
            self._local.conn = conn
        return conn

    @contextlib.contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction on this thread's connection: ``BEGIN IMMEDIATE`` (the write lock at
        once, so readers never see half of it), ``COMMIT`` at the end, ``ROLLBACK`` on any error."""
        conn = self()
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")


class SqliteKeyStore:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._conn = SqliteConnections(self.path)
        conn = self._conn()
        conn.executescript(_SCHEMA)
        conn.commit()

    # -- synchronous API (CLI, startup) -------------------------------------------------------
    def version_sync(self) -> int:
        row = self._conn().execute("SELECT version FROM meta WHERE id = 1").fetchone()
        return int(row[0])

    def load_sync(self) -> tuple[int, list[KeyRecord]]:
        conn = self._conn()
        conn.execute("BEGIN")
        try:
            version = int(conn.execute("SELECT version FROM meta WHERE id = 1").fetchone()[0])
            rows = conn.execute(
                "SELECT key_id, key_hash, tenant, tier, models, created_at, revoked_at, name FROM keys"
            ).fetchall()
        finally:
            conn.execute("COMMIT")
        return version, [_record(r) for r in rows]

    def insert(self, record: KeyRecord) -> None:
        models = None if record.models is None else json.dumps(sorted(record.models))
        self._conn().execute(
            "INSERT INTO keys (key_id, key_hash, tenant, tier, models, name, created_at, revoked_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (record.key_id, record.key_hash, record.tenant, record.tier, models, record.name,
             record.created_at, record.revoked_at),
        )

    def revoke(self, key_id: str, now_s: float) -> bool:
        cur = self._conn().execute(
            "UPDATE keys SET revoked_at = ? WHERE key_id = ? AND revoked_at IS NULL", (now_s, key_id)
        )
        return cur.rowcount > 0

    def count(self) -> int:
        return int(self._conn().execute("SELECT count(*) FROM keys").fetchone()[0])

    # -- async API (the gateway's refresher) -------------------------------------------------
    async def version(self) -> int:
        return await asyncio.to_thread(self.version_sync)

    async def load(self) -> tuple[int, list[KeyRecord]]:
        return await asyncio.to_thread(self.load_sync)


def _record(row: tuple[object, ...]) -> KeyRecord:
    key_id, key_hash, tenant, tier, models, created_at, revoked_at, name = row
    return KeyRecord(
        key_id=str(key_id),
        key_hash=str(key_hash),
        tenant=str(tenant),
        tier=str(tier),
        models=None if models is None else frozenset(json.loads(str(models))),
        created_at=float(created_at),  # type: ignore[arg-type]
        revoked_at=None if revoked_at is None else float(revoked_at),  # type: ignore[arg-type]
        name=None if name is None else str(name),
    )
