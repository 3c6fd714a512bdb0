import pytest

from seawall.edges.ledger import Ledger, LedgerRecord
from seawall.edges.stores.sqlite_ledger import SqliteLedgerSink, summarise
from seawall.testing import FakeClock


class FlakySink:
    def __init__(self) -> None:
        self.rows: dict[str, LedgerRecord] = {}
        self.down = False
        self.writes = 0

    async def write(self, records):
        if self.down:
            raise ConnectionError("db down")
        self.writes += 1
        for r in records:
            self.rows.setdefault(r.record_id, r)


def _rec(ledger: Ledger, i: int, tenant: str = "acme") -> LedgerRecord:
    return LedgerRecord(ledger.next_id(), 1_700_000_000.0 + i, f"req{i}", tenant, "k1", "free", "chat",
                        "dep-a", 10, 5, 0.1, None, 200, "ok")


async def test_flush_writes_batches(tmp_path):
    sink = FlakySink()
    ledger = Ledger(sink, tmp_path / "spill.jsonl", clock=FakeClock(), batch_size=10)
    for i in range(25):
        ledger.record(_rec(ledger, i))
    await ledger.flush()
    assert len(sink.rows) == 25 and sink.writes == 3 and ledger.pending == 0


async def test_outage_spills_then_replays_without_loss_or_duplicates(tmp_path):
    sink = FlakySink()
    spill = tmp_path / "spill.jsonl"
    ledger = Ledger(sink, spill, clock=FakeClock(), batch_size=7)
    for i in range(10):
        ledger.record(_rec(ledger, i))
    await ledger.flush()
    sink.down = True
    for i in range(10, 40):
        ledger.record(_rec(ledger, i))
    await ledger.flush()
    assert spill.exists() and ledger.state()["status"] == "degraded"
    assert ledger.spilled == 30
    for i in range(40, 45):
        ledger.record(_rec(ledger, i))
    await ledger.flush()  # still down: appended to the spill
    sink.down = False
    await ledger.flush()
    assert not spill.exists()
    assert sorted(int(r.request_id[3:]) for r in sink.rows.values()) == list(range(45))
    assert ledger.state()["status"] == "ok"


async def test_buffer_overflow_spills_instead_of_dropping(tmp_path):
    sink = FlakySink()
    ledger = Ledger(sink, tmp_path / "spill.jsonl", clock=FakeClock(), batch_size=10_000, max_buffer=100)
    for i in range(250):
        ledger.record(_rec(ledger, i))
    assert ledger.pending < 100 and ledger.spilled > 0
    await ledger.flush()
    assert len(sink.rows) == 250


async def test_torn_spill_line_is_skipped(tmp_path):
    sink = FlakySink()
    spill = tmp_path / "spill.jsonl"
    ledger = Ledger(sink, spill, clock=FakeClock())
    sink.down = True
    ledger.record(_rec(ledger, 1))
    await ledger.flush()
    _append(spill, b'["half')  # a crash mid-append
    sink.down = False
    await ledger.flush()
    assert len(sink.rows) == 1


async def test_sqlite_sink_is_idempotent_and_summarises(tmp_path):
    db = tmp_path / "l.db"
    sink = SqliteLedgerSink(db)
    ledger = Ledger(sink, tmp_path / "spill.jsonl", clock=FakeClock())
    recs = [_rec(ledger, i, tenant="a" if i % 2 else "b") for i in range(10)]
    await sink.write(recs)
    await sink.write(recs[:5])  # a replay
    assert sink.count() == 10
    rows = summarise(db, ("tenant",))
    assert [(r["tenant"], r["requests"], r["tokens_in"]) for r in rows] == [("a", 5, 50), ("b", 5, 50)]


async def test_background_flusher_and_stop(tmp_path):
    sink = FlakySink()
    clock = FakeClock()
    ledger = Ledger(sink, tmp_path / "spill.jsonl", clock=clock, flush_interval_s=1.0)
    ledger.start()
    await clock.until_asleep()
    ledger.record(_rec(ledger, 1))
    clock.advance(0.4)  # before the first turn (every half interval): nothing written
    await clock.until_asleep()
    assert not sink.rows
    clock.advance(0.1)
    await clock.until_asleep()
    assert len(sink.rows) == 1
    ledger.record(_rec(ledger, 2))
    await ledger.stop()  # the rest is written on the way out, whatever the clock says
    assert len(sink.rows) == 2


@pytest.mark.parametrize("n", [0, 1])
async def test_flush_with_nothing_is_harmless(tmp_path, n):
    sink = FlakySink()
    ledger = Ledger(sink, tmp_path / "spill.jsonl", clock=FakeClock())
    for i in range(n):
        ledger.record(_rec(ledger, i))
    await ledger.flush()
    assert len(sink.rows) == n


def _append(path, data: bytes) -> None:
    with open(path, "ab") as f:
        f.write(data)


async def test_processes_sharing_a_spill_path_get_their_own_slots_and_adopt_orphans(tmp_path):
    spill = tmp_path / "spill.jsonl"
    sink = FlakySink()
    a = Ledger(sink, spill, clock=FakeClock())
    b = Ledger(sink, spill, clock=FakeClock())  # a second worker process on the same config
    assert a.spill_path == spill and b.spill_path == tmp_path / "spill.1.jsonl"
    sink.down = True
    for i in range(5):
        b.record(_rec(b, i))
    await b.flush()
    assert b.spill_path.exists()
    b._finalizer()  # b dies (SIGKILL): its slot lock goes, its spill stays
    sink.down = False
    a._flushes = 0  # the next flush scans for orphans
    await a.flush()
    assert not b.spill_path.exists() and len(sink.rows) == 5 and a.replayed == 5
    c = Ledger(sink, spill, clock=FakeClock())  # a restarted worker takes the free slot
    assert c.spill_path == tmp_path / "spill.1.jsonl"


async def test_a_record_is_committed_within_one_flush_interval_even_when_writes_are_slow(tmp_path):
    """A record every 10 ms for 600 ms of the clock's time; each write takes 60 ms (a slow database,
    a third of the interval per batch): none waits more than the interval to be committed."""
    clock = FakeClock()

    class SlowSink(FlakySink):
        def __init__(self) -> None:
            super().__init__()
            self.lag: list[float] = []

        async def write(self, records):
            await clock.sleep(0.06)
            self.lag += [clock.now() - float(r.request_id) for r in records]

    sink = SlowSink()
    ledger = Ledger(sink, tmp_path / "spill.jsonl", clock=clock, flush_interval_s=0.2)
    ledger.start()
    for _ in range(60):
        await clock.until_asleep()
        rec = _rec(ledger, 0)
        rec.request_id = repr(clock.now())
        ledger.record(rec)
        clock.advance(0.01)
    for _ in range(30):
        await clock.until_asleep()
        clock.advance(0.01)
    await clock.until_asleep()
    assert len(sink.lag) == 60 and max(sink.lag) <= 0.2 + 1e-9
    assert max(sink.lag) > 0.1  # the slow writes did make records wait
    await ledger.stop()
