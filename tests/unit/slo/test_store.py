"""The SLO store contract, on SQLite here and on a real PostgreSQL in tests/e2e/scale."""

from __future__ import annotations

from seawall.edges.stores.sqlite_slo import SqliteSloStore
from seawall.slo.store import DAY_S, CountRow, Incident, IncidentUpdate, SloStore

T0 = 1_700_006_400  # a day boundary (UTC midnight)


def row(bucket: int, component: str = "front_door", tier: str = "api", total: int = 10, bad: int = 1,
        resolution: int = 60) -> CountRow:
    return CountRow(resolution, bucket, component, tier, total, bad, total - bad, 1, 0.5 * (total - bad))


async def check_contract(store: SloStore) -> None:
    # Counts add up, within one flush and across flushes (replicas write into the same buckets).
    await store.add([row(T0), row(T0 + 60), row(T0 + 60, tier="free")])
    await store.add([row(T0 + 60, total=5, bad=5)])
    got = {(r.window_s, r.tier): (r.total, r.bad) for r in await store.windows(T0 + 120, [60, 120, 3600], 60)
           if r.component == "front_door"}
    assert got[(60, "api")] == (15, 6)  # buckets starting at or after now - 60
    assert got[(120, "api")] == (25, 7)
    assert got[(3600, "api")] == (25, 7)
    assert got[(60, "free")] == (10, 1)
    fine = await store.buckets(60, T0)
    assert [(r.bucket_s, r.tier, r.total) for r in fine if r.tier == "api"] == [(T0, "api", 10), (T0 + 60, "api", 15)]
    assert sum(r.lat_sum_s for r in fine) == 0.5 * (9 + 9 + 9 + 0)
    await store.add([row(T0, component="auth")])
    assert {r.component for r in await store.buckets(60, T0, "auth")} == {"auth"}
    # Resolutions are separate; purge drops only old rows of one resolution.
    await store.add([row(T0, resolution=DAY_S, total=100, bad=0)])
    assert [r.total for r in await store.buckets(DAY_S, T0)] == [100]
    assert await store.purge(60, T0 + 60) == 2
    assert [r.bucket_s for r in await store.buckets(60, 0)] == [T0 + 60, T0 + 60]
    assert [r.total for r in await store.buckets(DAY_S, 0)] == [100]

    # Alert transitions: each claimed once.
    assert await store.claim("a|api|availability|page", True, 10.0)
    assert not await store.claim("a|api|availability|page", True, 11.0)
    assert await store.firing() == {"a|api|availability|page": 10.0}
    assert await store.claim("a|api|availability|page", False, 20.0)
    assert not await store.claim("a|api|availability|page", False, 21.0)
    assert not await store.claim("never-fired", False, 21.0)
    assert await store.firing() == {}

    # Incidents: one unresolved per alert key; updates move the status; resolving frees the key.
    inc = Incident(id="inc_1", name="Elevated errors", status="investigating", impact="major",
                   components=["group:chat"], alert_key="component:group:chat", created_at=100.0, updated_at=100.0,
                   resolved_at=None)
    first = IncidentUpdate("upd_1", "inc_1", "investigating", "Investigating: elevated errors", 100.0)
    assert await store.open_incident(inc, first)
    twin = Incident(id="inc_2", name="again", status="investigating", impact="major", components=[],
                    alert_key="component:group:chat", created_at=101.0, updated_at=101.0, resolved_at=None)
    assert not await store.open_incident(twin, IncidentUpdate("upd_2", "inc_2", "investigating", "x", 101.0))
    found = await store.incident_for_alert("component:group:chat")
    assert found is not None and found.id == "inc_1" and [u.id for u in found.updates] == ["upd_1"]
    moved = await store.add_update(IncidentUpdate("upd_3", "inc_1", "identified", "A bad deploy.", 110.0))
    assert moved is not None and moved.status == "identified" and moved.resolved_at is None
    assert [u.status for u in moved.updates] == ["identified", "investigating"]  # newest first
    assert await store.add_update(IncidentUpdate("upd_4", "nope", "resolved", "x", 120.0)) is None
    done = await store.add_update(IncidentUpdate("upd_5", "inc_1", "resolved", "Fixed.", 130.0))
    assert done is not None and done.resolved_at == 130.0
    assert await store.incident_for_alert("component:group:chat") is None
    assert await store.open_incident(twin, IncidentUpdate("upd_2", "inc_2", "investigating", "x", 140.0))
    listed = await store.incidents(since_s=0.0)
    assert [i.id for i in listed] == ["inc_2", "inc_1"]
    assert [i.id for i in await store.incidents(since_s=135.0)] == ["inc_2"]  # resolved before: not listed
    await store.close()


async def test_sqlite_store_keeps_the_contract(tmp_path):
    await check_contract(SqliteSloStore(tmp_path / "slo.db"))


async def test_sqlite_counts_survive_a_new_store_on_the_same_file(tmp_path):
    store = SqliteSloStore(tmp_path / "slo.db")
    await store.add([row(T0)])
    again = SqliteSloStore(tmp_path / "slo.db")
    assert [(r.total, r.bad) for r in await again.windows(T0 + 60, [300], 60)] == [(10, 1)]
