"""Responses API responses on a real PostgreSQL: the same contract as the SQLite store."""

from __future__ import annotations

import pytest

from seawall.edges.stores.postgres_responses import PostgresResponseStore
from tests.unit.edges.test_response_store import check_contract

pytestmark = pytest.mark.e2e


async def test_postgres_store_keeps_the_contract(database_url, schema):
    await check_contract(PostgresResponseStore(database_url, schema=schema))


async def test_a_database_that_is_down_is_an_error_within_the_timeout():
    store = PostgresResponseStore("postgresql://seawall@127.0.0.1:1/none", timeout_s=0.5)
    with pytest.raises(OSError):
        await store.get("resp_x", "acme", 0.0)
