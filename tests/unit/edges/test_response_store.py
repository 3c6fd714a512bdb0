"""The response store contract on SQLite (the PostgreSQL store runs the same contract in
tests/e2e/scale/test_postgres_responses.py)."""

from __future__ import annotations

from seawall.edges.stores.sqlite_responses import SqliteResponseStore
from seawall.edges.stores.stored_response import ResponseStore, StoredResponse


def record(response_id: str, tenant: str = "acme", created_at: float = 1000.0) -> StoredResponse:
    return StoredResponse(response_id, tenant, created_at, b'{"id":"%s"}' % response_id.encode(),
                          b'[{"role":"user","content":"hi"}]')


async def check_contract(store: ResponseStore) -> None:
    await store.put(record("resp_a"))
    assert await store.get("resp_a", "acme", 0.0) == record("resp_a")
    assert await store.get("resp_a", "other", 0.0) is None, "another tenant never sees it"
    assert await store.get("resp_a", "acme", 1000.5) is None, "past its retention it is gone"
    assert await store.get("resp_missing", "acme", 0.0) is None
    assert not await store.delete("resp_a", "other")
    assert await store.delete("resp_a", "acme")
    assert not await store.delete("resp_a", "acme")
    await store.put(record("resp_old", created_at=10.0))
    await store.put(record("resp_new", created_at=2000.0))
    assert await store.purge(1000.0) == 1
    assert await store.get("resp_old", "acme", 0.0) is None
    assert await store.get("resp_new", "acme", 0.0) == record("resp_new", created_at=2000.0)
    await store.close()


async def test_sqlite_store_keeps_the_contract(tmp_path):
    await check_contract(SqliteResponseStore(tmp_path / "s.db"))


async def test_sqlite_store_survives_a_reopen(tmp_path):
    await SqliteResponseStore(tmp_path / "s.db").put(record("resp_kept"))
    assert await SqliteResponseStore(tmp_path / "s.db").get("resp_kept", "acme", 0.0) == record("resp_kept")


async def test_the_runtime_purges_expired_responses_in_the_background_at_start(tmp_path):
    import yaml

    from seawall.config import parse_config
    from seawall.config.stack import build_runtime

    config = parse_config(yaml.safe_load(f"""
store: {{sqlite_path: "{tmp_path}/s.db", ledger_spill_path: "{tmp_path}/spill.jsonl", responses_retention_s: 60}}
models: [{{name: chat, deployments: [{{base_url: "http://127.0.0.1:9/v1"}}]}}]
"""))
    store = SqliteResponseStore(tmp_path / "s.db")
    await store.put(record("resp_old", created_at=1.0))
    runtime = build_runtime(config)
    await runtime.start()
    try:
        assert runtime._purge is not None
        await runtime._purge
        assert await store.get("resp_old", "acme", 0.0) is None
    finally:
        await runtime.stop()
