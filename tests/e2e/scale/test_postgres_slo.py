"""SLO counters, alert state and incidents on a real PostgreSQL: the same contract as SQLite, plus
two stores (two replicas) claiming the same alert transition: exactly one wins."""

from __future__ import annotations

import asyncio

import pytest

from seawall.edges.stores.postgres_slo import PostgresSloStore
from tests.unit.slo.test_store import T0, check_contract, row

pytestmark = pytest.mark.e2e


async def test_postgres_store_keeps_the_contract(database_url, schema):
    await check_contract(PostgresSloStore(database_url, schema=schema))


async def test_replicas_add_into_the_same_buckets_and_one_claims_each_transition(database_url, schema):
    a, b = PostgresSloStore(database_url, schema=schema), PostgresSloStore(database_url, schema=schema)
    try:
        await asyncio.gather(*(s.add([row(T0)]) for s in (a, b) for _ in range(5)))
        got = await a.windows(T0 + 60, [60], 60)
        assert [(r.total, r.bad) for r in got] == [(100, 10)]
        key = "k|api|availability|page"
        claims = await asyncio.gather(*(s.claim(key, True, 1.0) for s in (a, b) for _ in range(4)))
        assert sorted(claims) == [False] * 7 + [True]
    finally:
        await a.close()
        await b.close()
