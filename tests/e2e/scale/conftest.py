"""Fixtures for the scale tests: Redis and PostgreSQL (shared or throwaway), a unique key prefix and
schema per test run, a mock upstream, and gateway processes wired to them."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.harness import Proc, start_mock
from tests.e2e.scale.services import PgCluster, RedisServer

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="session")
def run_id() -> str:
    """Unique per test run: Redis key prefix and PostgreSQL schema names start with it."""
    return f"sw_{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="session")
def redis_url(run_id: str) -> Iterator[str]:
    url = os.environ.get("REDIS_URL")
    server = None
    if not url:
        server = RedisServer.find()
        if server is None:
            pytest.skip("no REDIS_URL and no redis-server on PATH")
        server.start()
        url = server.url
    yield url
    if server is not None:
        server.stop()
    else:
        asyncio.run(_drop_redis_prefix(url, run_id))


@pytest.fixture(scope="session")
def database_url(run_id: str) -> Iterator[str]:
    url = os.environ.get("DATABASE_URL")
    cluster = None
    if not url:
        cluster, why = PgCluster.find()
        if cluster is None:
            pytest.skip(why)
        cluster.start()
        url = cluster.url
    yield url
    if cluster is not None:
        cluster.destroy()
    else:
        asyncio.run(_drop_schemas(url, run_id))


@pytest.fixture
def schema(run_id: str, request: pytest.FixtureRequest) -> str:
    """A schema of its own for each test (within this run's prefix)."""
    return f"{run_id}_{abs(hash(request.node.name)) % 10**8}"


@pytest.fixture
def redis_prefix(run_id: str, request: pytest.FixtureRequest) -> str:
    return f"{run_id}:{abs(hash(request.node.name)) % 10**8}"


@pytest.fixture
def throwaway_redis() -> Iterator[RedisServer]:
    server = RedisServer.find()
    if server is None:
        pytest.skip("no redis-server on PATH for a throwaway server to stop")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def throwaway_pg() -> Iterator[PgCluster]:
    cluster, why = PgCluster.find()
    if cluster is None:
        pytest.skip(why)
    cluster.start()
    yield cluster
    cluster.destroy()


@pytest.fixture(scope="module")
def scale_tmp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("scale")


@pytest.fixture(scope="module")
def upstream(scale_tmp: Path) -> Iterator[Proc]:
    proc = start_mock(scale_tmp, "--base-latency-s", "0.002", "--tokens-per-s", "100000", "--seed", "1",
                      "--max-in-flight", "10000")
    yield proc
    proc.stop()


async def _drop_redis_prefix(url: str, run_id: str) -> None:
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(url)
    try:
        async for key in client.scan_iter(match=f"{run_id}:*", count=1000):
            await client.delete(key)
    finally:
        await client.aclose()


async def _drop_schemas(url: str, run_id: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        names = await conn.fetch("SELECT nspname FROM pg_namespace WHERE nspname LIKE $1", f"{run_id}%")
        for row in names:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{row["nspname"]}" CASCADE')
    finally:
        await conn.close()
