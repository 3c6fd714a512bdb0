"""Key stores and ledgers: SQLite (embedded default), PostgreSQL and Redis beyond one machine.

The factories here are the one place that picks a driver from the config: PostgreSQL for keys and
the ledger when ``database_url`` (or ``store.database_url``) is set, SQLite otherwise.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from seawall.auth.keys import KeyRecord, KeyStore

if TYPE_CHECKING:
    from seawall.config.schema import Config
    from seawall.edges.ledger import LedgerSink
    from seawall.edges.stores.stored_response import ResponseStore
    from seawall.slo.store import SloStore

__all__ = ["KeyAdmin", "key_store_for", "ledger_sink_for", "response_store_for", "slo_store_for", "usage_summary"]


class KeyAdmin(KeyStore, Protocol):
    """A key store as the CLI and first start see it: synchronous writes and reads."""

    def version_sync(self) -> int: ...

    def load_sync(self) -> tuple[int, list[KeyRecord]]: ...

    def insert(self, record: KeyRecord) -> None: ...

    def revoke(self, key_id: str, now_s: float) -> bool: ...

    def count(self) -> int: ...


def key_store_for(config: Config) -> KeyAdmin:
    url = config.shared_database_url
    if url:
        from seawall.edges.stores.postgres import PostgresKeyStore

        s = config.store
        return PostgresKeyStore(url, schema=s.database_schema, timeout_s=s.database_timeout_s)
    from seawall.edges.stores.sqlite import SqliteKeyStore

    return SqliteKeyStore(config.store.sqlite_path)


def ledger_sink_for(config: Config) -> LedgerSink:
    url = config.shared_database_url
    if url:
        from seawall.edges.stores.postgres_ledger import PostgresLedgerSink

        s = config.store
        return PostgresLedgerSink(url, schema=s.database_schema, timeout_s=s.database_timeout_s)
    from seawall.edges.stores.sqlite_ledger import SqliteLedgerSink

    return SqliteLedgerSink(config.store.sqlite_path)


def response_store_for(config: Config) -> ResponseStore:
    """Where Responses API responses are kept (``store: true``): the same database as keys and ledger."""
    url = config.shared_database_url
    if url:
        from seawall.edges.stores.postgres_responses import PostgresResponseStore

        s = config.store
        return PostgresResponseStore(url, schema=s.database_schema, timeout_s=s.database_timeout_s)
    from seawall.edges.stores.sqlite_responses import SqliteResponseStore

    return SqliteResponseStore(config.store.sqlite_path)


def usage_summary(config: Config, by: tuple[str, ...], since_ts: float | None) -> list[dict[str, Any]]:
    url = config.shared_database_url
    if url:
        from seawall.edges.stores import postgres_ledger

        s = config.store
        return postgres_ledger.summarise(url, s.database_schema, by, since_ts, s.database_timeout_s)
    from seawall.edges.stores import sqlite_ledger

    return sqlite_ledger.summarise(config.store.sqlite_path, by, since_ts)


def slo_store_for(config: Config) -> SloStore:
    """SLO counters, alert state and incidents: the same database as keys and the ledger."""
    url = config.shared_database_url
    if url:
        from seawall.edges.stores.postgres_slo import PostgresSloStore

        s = config.store
        return PostgresSloStore(url, schema=s.database_schema, timeout_s=s.database_timeout_s)
    from seawall.edges.stores.sqlite_slo import SqliteSloStore

    return SqliteSloStore(config.store.sqlite_path)
