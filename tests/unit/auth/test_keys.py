import asyncio

import pytest

from seawall.auth.keys import (
    KeyRecord,
    KeyRefresher,
    KeySnapshot,
    NegativeCache,
    hash_key,
    new_key,
    split_key,
)
from seawall.core.types import Criticality
from seawall.testing import FakeClock, SeededRng

CRIT = {"gold": Criticality.CRITICAL_PLUS, "free": Criticality.SHEDDABLE}.__getitem__


def _record(key: str, tier: str = "gold", revoked: float | None = None, models=None) -> KeyRecord:
    return KeyRecord(split_key(key) or "", hash_key(key), "acme", tier, models, 0.0, revoked)


def test_new_key_format_roundtrip():
    key_id, key = new_key(SeededRng(1).token_hex)
    assert split_key(key) == key_id and len(key_id) == 12
    assert split_key(key[:-1]) is None
    assert split_key("sk-" + key[3:]) is None


def test_snapshot_verifies_only_the_exact_key():
    _, key = new_key(SeededRng(2).token_hex)
    snap = KeySnapshot.build([_record(key)], 1, CRIT)
    p = snap.verify(key)
    assert p is not None and p.tenant == "acme" and p.criticality is Criticality.CRITICAL_PLUS
    wrong = key[:-1] + ("0" if key[-1] != "0" else "1")
    assert snap.verify(wrong) is None
    assert snap.verify("garbage") is None


def test_snapshot_skips_revoked_and_unknown_tiers():
    rng = SeededRng(3)
    _, k1 = new_key(rng.token_hex)
    _, k2 = new_key(rng.token_hex)
    snap = KeySnapshot.build([_record(k1, revoked=5.0), _record(k2, tier="nope")], 1, CRIT)
    assert snap.size == 0 and snap.verify(k1) is None


def test_negative_cache_expires_and_is_bounded():
    neg = NegativeCache(capacity=2, ttl_s=10)
    neg.add("a", 0)
    assert neg.hit("a", 5)
    assert not neg.hit("a", 11)
    for name in "bcd":
        neg.add(name, 0)
    assert len(neg) == 2 and not neg.hit("b", 1)


class FlakyStore:
    def __init__(self) -> None:
        self.records: list[KeyRecord] = []
        self.ver = 0
        self.down = False
        self.loads = 0

    async def version(self) -> int:
        if self.down:
            raise ConnectionError("store down")
        return self.ver

    async def load(self):
        if self.down:
            raise ConnectionError("store down")
        self.loads += 1
        return self.ver, list(self.records)


async def test_refresher_reloads_on_change_and_fails_static():
    clock = FakeClock()
    store = FlakyStore()
    _, key = new_key(SeededRng(4).token_hex)
    store.records.append(_record(key))
    store.ver = 1
    r = KeyRefresher(store, CRIT, clock=clock, interval_s=1)
    assert await r.refresh()
    assert r.snapshot.verify(key) is not None and r.state()["status"] == "ok"
    assert await r.refresh() and store.loads == 1  # unchanged version: no reload
    store.down = True
    assert not await r.refresh()
    assert r.snapshot.verify(key) is not None  # last snapshot keeps serving
    assert r.state()["status"] == "degraded"
    store.down = False
    store.records = [_record(key, revoked=1.0)]
    store.ver = 2
    assert await r.refresh()
    assert r.snapshot.verify(key) is None and r.state()["status"] == "ok"


async def test_refresher_never_loaded_reports_failed():
    store = FlakyStore()
    store.down = True
    r = KeyRefresher(store, CRIT, clock=FakeClock(), interval_s=1)
    assert not await r.refresh()
    assert r.state()["status"] == "failed" and not r.loaded


async def test_poke_triggers_early_refresh():
    store = FlakyStore()
    r = KeyRefresher(store, CRIT, clock=FakeClock(), interval_s=3600)
    await r.refresh()
    r.start()
    try:
        _, key = new_key(SeededRng(5).token_hex)
        store.records.append(_record(key))
        store.ver = 7
        r.poke()
        for _ in range(100):
            await asyncio.sleep(0.01)
            if r.snapshot.version == 7:
                break
        assert r.snapshot.verify(key) is not None
    finally:
        await r.stop()


@pytest.mark.parametrize("bad", ["", "sw-", "sw-xyz", "x" * 64])
def test_split_key_rejects_malformed(bad):
    assert split_key(bad) is None
