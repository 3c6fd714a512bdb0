"""PostgreSQL key store (asyncpg), for many replicas: the same contract as the SQLite one.

Replicas never read keys on the request path: each serves from its in-memory snapshot
(:class:`seawall.auth.keys.KeyRefresher`), which polls one change counter every
``refresh_interval_s``. A statement trigger bumps the counter *and* sends ``NOTIFY`` on the
channel ``<schema>_keys``; every replica LISTENs on a dedicated connection and refreshes at once,
so a key created or revoked from the CLI reaches all of them in tens of milliseconds. If the
LISTEN connection is lost (checked every 5 s with a ping), polling still gets the change there
within one refresh interval, and the listener reconnects with backoff; on reconnecting it asks
for one refresh, since notifications sent meanwhile are lost. A database outage changes nothing
for known keys: the refresher keeps the last snapshot.

Tables live in their own schema (``store.database_schema``, default ``seawall``), created on first
use under an advisory lock so that replicas starting together do not race on the DDL. The CLI uses
the synchronous methods (one short connection each); the gateway uses a small pool.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import asyncpg

from seawall.auth.keys import KeyRecord

__all__ = ["PostgresKeyStore", "connect", "ensure_schema"]

log = logging.getLogger("seawall.stores")

T = TypeVar("T")

LISTEN_PING_S = 5.0

_KEYS_DDL = """
CREATE TABLE IF NOT EXISTS {s}.keys (
    key_id     text PRIMARY KEY,
    key_hash   text NOT NULL,
    tenant     text NOT NULL,
    tier       text NOT NULL,
    models     text,
    name       text,
    created_at double precision NOT NULL,
    revoked_at double precision
);
CREATE TABLE IF NOT EXISTS {s}.key_meta (id int PRIMARY KEY CHECK (id = 1), version bigint NOT NULL);
INSERT INTO {s}.key_meta (id, version) VALUES (1, 0) ON CONFLICT DO NOTHING;
CREATE OR REPLACE FUNCTION {s}.keys_changed() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE v bigint;
BEGIN
    UPDATE {s}.key_meta SET version = version + 1 WHERE id = 1 RETURNING version INTO v;
    PERFORM pg_notify('{channel}', v::text);
    RETURN NULL;
END $$;
DO $$ BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_trigger WHERE tgname = 'keys_changed'
                   AND tgrelid = '{s}.keys'::regclass) THEN
        CREATE TRIGGER keys_changed AFTER INSERT OR UPDATE OR DELETE ON {s}.keys
            FOR EACH STATEMENT EXECUTE FUNCTION {s}.keys_changed();
    END IF;
END $$;
"""


async def connect(url: str, schema: str, timeout_s: float) -> asyncpg.Connection:
    return await asyncpg.connect(url, timeout=timeout_s, command_timeout=timeout_s,
                                 server_settings={"search_path": schema, "application_name": "seawall"})


async def ensure_schema(conn: asyncpg.Connection, schema: str, ddl: str) -> None:
    """Run ``ddl`` (with ``{s}`` = the quoted schema) once per database, serialised across replicas."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext('seawall-ddl'))")
        await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
        await conn.execute(ddl.format(s=f'"{schema}"', channel=f"{schema}_keys"))


async def schema_pool(url: str, schema: str, ddl: str, *, timeout_s: float, command_timeout_s: float,
                      max_size: int, application_name: str) -> asyncpg.Pool:
    """A pool on ``schema``, after its ``ddl`` has run (once per database, :func:`ensure_schema`):
    what every PostgreSQL store of seawall opens on first use."""
    conn = await connect(url, schema, timeout_s)
    try:
        await ensure_schema(conn, schema, ddl)
    finally:
        await conn.close()
    return await asyncpg.create_pool(
        url, min_size=0, max_size=max_size, timeout=timeout_s, command_timeout=command_timeout_s,
        server_settings={"search_path": schema, "application_name": application_name})


def _record(row: Any) -> KeyRecord:
    models = row["models"]
    return KeyRecord(
        key_id=row["key_id"], key_hash=row["key_hash"], tenant=row["tenant"], tier=row["tier"],
        models=None if models is None else frozenset(json.loads(models)),
        created_at=float(row["created_at"]),
        revoked_at=None if row["revoked_at"] is None else float(row["revoked_at"]),
        name=row["name"],
    )


class PostgresKeyStore:
    def __init__(self, url: str, *, schema: str = "seawall", timeout_s: float = 2.0) -> None:
        self.url = url
        self.schema = schema
        self.timeout_s = timeout_s
        self.channel = f"{schema}_keys"
        self.listening = False
        self._pool: asyncpg.Pool | None = None
        self._listener: asyncio.Task[None] | None = None

    # -- the gateway (async) ------------------------------------------------------------------
    async def _acquire_pool(self) -> asyncpg.Pool:
        if self._pool is None:
            self._pool = await schema_pool(self.url, self.schema, _KEYS_DDL, timeout_s=self.timeout_s,
                                           command_timeout_s=self.timeout_s, max_size=2, application_name="seawall")
        return self._pool

    async def version(self) -> int:
        pool = await self._acquire_pool()
        async with asyncio.timeout(self.timeout_s):
            return int(await pool.fetchval("SELECT version FROM key_meta WHERE id = 1"))

    async def load(self) -> tuple[int, list[KeyRecord]]:
        pool = await self._acquire_pool()
        async with asyncio.timeout(self.timeout_s * 2), pool.acquire() as conn, conn.transaction(
                isolation="repeatable_read", readonly=True):
            version = int(await conn.fetchval("SELECT version FROM key_meta WHERE id = 1"))
            rows = await conn.fetch("SELECT * FROM keys")
        return version, [_record(r) for r in rows]

    def start_listener(self, on_change: Callable[[], None]) -> None:
        """LISTEN for changes in the background; ``on_change`` (e.g. ``KeyRefresher.poke``) is called
        on every notification and after every (re)connection."""
        if self._listener is None:
            self._listener = asyncio.get_running_loop().create_task(self._listen(on_change), name="key-listener")

    async def _listen(self, on_change: Callable[[], None]) -> None:
        backoff_s = 0.2
        while True:
            conn: asyncpg.Connection | None = None
            try:
                conn = await connect(self.url, self.schema, self.timeout_s)
                lost = asyncio.Event()
                conn.add_termination_listener(lambda _c, ev=lost: ev.set())
                await conn.add_listener(self.channel, lambda *_a: on_change())
                self.listening = True
                backoff_s = 0.2
                on_change()  # whatever changed while nobody listened
                while not lost.is_set():
                    try:
                        await asyncio.wait_for(lost.wait(), LISTEN_PING_S)
                    except TimeoutError:
                        await conn.fetchval("SELECT 1", timeout=self.timeout_s)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if self.listening:
                    log.warning("key change listener lost (%s); polling until it reconnects", exc)
            finally:
                self.listening = False
                if conn is not None:
                    conn.terminate()
            await asyncio.sleep(backoff_s)
            backoff_s = min(backoff_s * 2, 5.0)

    async def close(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            try:
                await self._listener
            except asyncio.CancelledError:
                pass
            self._listener = None
        if self._pool is not None:
            self._pool.terminate()
            self._pool = None

    # -- the CLI (sync; one short connection per call) ----------------------------------------
    def _sync(self, fn: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
        async def run() -> T:
            conn = await connect(self.url, self.schema, self.timeout_s)
            try:
                await ensure_schema(conn, self.schema, _KEYS_DDL)
                return await fn(conn)
            finally:
                await conn.close()

        return asyncio.run(run())

    def version_sync(self) -> int:
        async def q(conn: asyncpg.Connection) -> int:
            return int(await conn.fetchval("SELECT version FROM key_meta WHERE id = 1"))

        return self._sync(q)

    def load_sync(self) -> tuple[int, list[KeyRecord]]:
        async def q(conn: asyncpg.Connection) -> tuple[int, list[KeyRecord]]:
            async with conn.transaction(isolation="repeatable_read", readonly=True):
                version = int(await conn.fetchval("SELECT version FROM key_meta WHERE id = 1"))
                rows = await conn.fetch("SELECT * FROM keys ORDER BY created_at")
            return version, [_record(r) for r in rows]

        return self._sync(q)

    def insert(self, record: KeyRecord) -> None:
        models = None if record.models is None else json.dumps(sorted(record.models))

        async def q(conn: asyncpg.Connection) -> None:
            await conn.execute(
                "INSERT INTO keys (key_id, key_hash, tenant, tier, models, name, created_at, revoked_at)"
                " VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                record.key_id, record.key_hash, record.tenant, record.tier, models, record.name,
                record.created_at, record.revoked_at)

        self._sync(q)

    def revoke(self, key_id: str, now_s: float) -> bool:
        async def q(conn: asyncpg.Connection) -> bool:
            status = await conn.execute(
                "UPDATE keys SET revoked_at = $1 WHERE key_id = $2 AND revoked_at IS NULL", now_s, key_id)
            return bool(status.endswith(" 1"))

        return self._sync(q)

    def count(self) -> int:
        async def q(conn: asyncpg.Connection) -> int:
            return int(await conn.fetchval("SELECT count(*) FROM keys"))

        return self._sync(q)
