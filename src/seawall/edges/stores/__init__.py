"""Key stores and ledgers: SQLite (embedded default), PostgreSQL and Redis beyond one machine.

The factories here are the one place that picks a driver from the config: PostgreSQL for keys and
the ledger when ``database_url`` (or ``store.database_url``) is set, SQLite otherwise.
"""

from __future__ import annotations

import importlib
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


def _store(config: Config, postgres: str, sqlite: str) -> Any:
    """The store class named ``module:Class`` (under ``seawall.edges.stores``) for the configured
    database: ``postgres`` when a database URL is set, else ``sqlite`` on the embedded file. The
    module is imported only when chosen, so the embedded default never loads asyncpg."""
    url = config.shared_database_url
    module, _, name = (postgres if url else sqlite).partition(":")
    cls = getattr(importlib.import_module(f"seawall.edges.stores.{module}"), name)
    if url:
        s = config.store
        return cls(url, schema=s.database_schema, timeout_s=s.database_timeout_s)
    return cls(config.store.sqlite_path)


def key_store_for(config: Config) -> KeyAdmin:
    store: KeyAdmin = _store(config, "postgres:PostgresKeyStore", "sqlite:SqliteKeyStore")
    return store


def ledger_sink_for(config: Config) -> LedgerSink:
    sink: LedgerSink = _store(config, "postgres_ledger:PostgresLedgerSink", "sqlite_ledger:SqliteLedgerSink")
    return sink


def response_store_for(config: Config) -> ResponseStore:
    """Where Responses API responses are kept (``store: true``): the same database as keys and ledger."""
    store: ResponseStore = _store(config, "postgres_responses:PostgresResponseStore",
                                  "sqlite_responses:SqliteResponseStore")
    return store


def slo_store_for(config: Config) -> SloStore:
    """SLO counters, alert state and incidents: the same database as keys and the ledger."""
    store: SloStore = _store(config, "postgres_slo:PostgresSloStore", "sqlite_slo:SqliteSloStore")
    return store


def usage_summary(config: Config, by: tuple[str, ...], since_ts: float | None) -> list[dict[str, Any]]:
    url = config.shared_database_url
    if url:
        from seawall.edges.stores import postgres_ledger

        s = config.store
        return postgres_ledger.summarise(url, s.database_schema, by, since_ts, s.database_timeout_s)
    from seawall.edges.stores import sqlite_ledger

    return sqlite_ledger.summarise(config.store.sqlite_path, by, since_ts)
