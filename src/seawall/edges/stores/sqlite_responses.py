"""SQLite store of Responses API responses (``store: true``), the embedded default.

One row per response: its tenant (only that tenant may read, chain from or delete it), when it was
made, the ``response`` object as sent, and the conversation a ``previous_response_id`` continues
(chat messages, JSON). Rows older than the retention are invisible to reads and are purged at
start. Calls run in a worker thread, so the event loop never waits on disk.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from seawall.edges.stores.sqlite import SqliteConnections
from seawall.edges.stores.stored_response import StoredResponse

__all__ = ["SqliteResponseStore"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS responses (
    response_id  TEXT PRIMARY KEY,
    tenant       TEXT NOT NULL,
    created_at   REAL NOT NULL,
    body         BLOB NOT NULL,
    conversation BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS responses_created ON responses (created_at);
"""


class SqliteResponseStore:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._conn = SqliteConnections(self.path)
        self._conn().executescript(_SCHEMA)

    def put_sync(self, record: StoredResponse) -> None:
        self._conn().execute(
            "INSERT OR REPLACE INTO responses VALUES (?, ?, ?, ?, ?)",
            (record.response_id, record.tenant, record.created_at, record.body, record.conversation))

    def get_sync(self, response_id: str, tenant: str, since_s: float) -> StoredResponse | None:
        row = self._conn().execute(
            "SELECT response_id, tenant, created_at, body, conversation FROM responses"
            " WHERE response_id = ? AND tenant = ? AND created_at >= ?", (response_id, tenant, since_s)).fetchone()
        if row is None:
            return None
        return StoredResponse(str(row[0]), str(row[1]), float(row[2]), bytes(row[3]), bytes(row[4]))

    def delete_sync(self, response_id: str, tenant: str) -> bool:
        cur = self._conn().execute("DELETE FROM responses WHERE response_id = ? AND tenant = ?",
                                   (response_id, tenant))
        return cur.rowcount > 0

    def purge_sync(self, before_s: float) -> int:
        return int(self._conn().execute("DELETE FROM responses WHERE created_at < ?", (before_s,)).rowcount)

    async def put(self, record: StoredResponse) -> None:
        await asyncio.to_thread(self.put_sync, record)

    async def get(self, response_id: str, tenant: str, since_s: float) -> StoredResponse | None:
        return await asyncio.to_thread(self.get_sync, response_id, tenant, since_s)

    async def delete(self, response_id: str, tenant: str) -> bool:
        return await asyncio.to_thread(self.delete_sync, response_id, tenant)

    async def purge(self, before_s: float) -> int:
        return await asyncio.to_thread(self.purge_sync, before_s)

    async def close(self) -> None:
        return None
