"""PostgreSQL store of Responses API responses, for many replicas: the SQLite store's contract.

A response made on one replica can be continued (``previous_response_id``), read or deleted on any
other. The pool connects lazily and reconnects by itself; every call is bounded by
``timeout_s``, so a database outage is an error for that request, never a hang.
"""

from __future__ import annotations

import asyncio

import asyncpg

from seawall.edges.stores.postgres import schema_pool
from seawall.edges.stores.stored_response import StoredResponse

__all__ = ["PostgresResponseStore"]

_DDL = """
CREATE TABLE IF NOT EXISTS {s}.responses (
    response_id  text PRIMARY KEY,
    tenant       text NOT NULL,
    created_at   double precision NOT NULL,
    body         bytea NOT NULL,
    conversation bytea NOT NULL
);
CREATE INDEX IF NOT EXISTS responses_created ON {s}.responses (created_at);
"""


class PostgresResponseStore:
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
                                               command_timeout_s=self.timeout_s, max_size=4,
                                               application_name="seawall-responses")
            return self._pool

    async def put(self, record: StoredResponse) -> None:
        pool = await self._acquire_pool()
        async with asyncio.timeout(self.timeout_s):
            await pool.execute(
                "INSERT INTO responses VALUES ($1, $2, $3, $4, $5) ON CONFLICT (response_id) DO UPDATE"
                " SET body = EXCLUDED.body, conversation = EXCLUDED.conversation",
                record.response_id, record.tenant, record.created_at, record.body, record.conversation)

    async def get(self, response_id: str, tenant: str, since_s: float) -> StoredResponse | None:
        pool = await self._acquire_pool()
        async with asyncio.timeout(self.timeout_s):
            row = await pool.fetchrow(
                "SELECT response_id, tenant, created_at, body, conversation FROM responses"
                " WHERE response_id = $1 AND tenant = $2 AND created_at >= $3", response_id, tenant, since_s)
        if row is None:
            return None
        return StoredResponse(row[0], row[1], float(row[2]), bytes(row[3]), bytes(row[4]))

    async def delete(self, response_id: str, tenant: str) -> bool:
        pool = await self._acquire_pool()
        async with asyncio.timeout(self.timeout_s):
            status = await pool.execute("DELETE FROM responses WHERE response_id = $1 AND tenant = $2",
                                        response_id, tenant)
        return bool(status.endswith(" 1"))

    async def purge(self, before_s: float) -> int:
        pool = await self._acquire_pool()
        async with asyncio.timeout(self.timeout_s * 5):
            status = await pool.execute("DELETE FROM responses WHERE created_at < $1", before_s)
        return int(status.rsplit(" ", 1)[-1])

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None
