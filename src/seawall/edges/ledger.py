"""The usage ledger: one record per request, written in batches off the request path.

``record()`` is an O(1) append to a bounded in-memory buffer. A background task flushes the buffer
every ``flush_interval_s`` (or sooner when ``batch_size`` records wait) to a sink (SQLite by
default, PostgreSQL beyond one machine). When the sink fails, the batch goes to a local
append-only spill file (JSON lines, fsynced) and is replayed, oldest first, once the sink answers
again. Every record carries a unique ``record_id`` made when it is created, and sinks insert with
"ignore duplicates", so a replay after a crash between "written" and "spill truncated" cannot
double count. If the buffer fills faster than the sink drains, the overflow is spilled at once
rather than dropped.

Durability bound: the flusher runs on a fixed schedule twice per ``flush_interval_s`` (not "an
interval after the last flush ended"), so a record is committed at most one interval after it was
recorded, with half an interval of room for the write itself and event-loop lag. A process killed
with SIGKILL loses only what was answered within the last interval.

Several processes may share one configured spill path (``--workers N``, lanes): each claims a
*slot* with an exclusive ``flock`` (slot 0 is the path itself, slot i is ``<stem>.<i><suffix>``),
and a flusher whose sink works adopts any slot whose lock is free — the spill of a process that
died — replays it and deletes it. A crash therefore never strands spilled records.
"""

from __future__ import annotations

import asyncio
import logging
import os
import weakref
from collections import deque
from pathlib import Path
from typing import Any, Protocol

import msgspec

from seawall.core.background import sleep_or_wake
from seawall.env import Clock

__all__ = ["GUARD_COLUMNS", "Ledger", "LedgerRecord", "LedgerSink", "guard_columns"]

log = logging.getLogger("seawall.ledger")


class LedgerRecord(msgspec.Struct, array_like=True):
    record_id: str
    ts: float  # unix seconds when the request finished
    request_id: str
    tenant: str | None
    key_id: str | None
    tier: str | None
    model: str | None
    deployments: str  # comma-separated, in the order tried
    tokens_in: int
    tokens_out: int
    latency_s: float
    ttft_s: float | None
    status: int
    reason: str
    # The guard's decision (policies/guard.py), None when no guard ran. Last, with defaults, so
    # spill files written before these columns existed still load.
    guard_action: str | None = None  # allow | flag | redact | block | unavailable
    guard_stage: str | None = None  # "1" or "1+2"
    guard_rules: str | None = None  # category/rule of each hit, comma-separated (never the text)
    guard_score: float | None = None
    guard_latency_s: float | None = None
    guard_degraded: bool | None = None  # stage 2 was wanted and skipped
    guard_output: str | None = None  # guard_out: "block:<category>/<rule>" when a stream was cut


def guard_columns(record: Any) -> dict[str, Any]:
    """The ``guard_*`` fields of a :class:`LedgerRecord` from a request's ``ctx.guard``."""
    if record is None:
        return {}
    return {"guard_action": record.action, "guard_stage": record.stage, "guard_rules": record.rules or None,
            "guard_score": record.score, "guard_latency_s": record.latency_s, "guard_degraded": record.degraded,
            "guard_output": record.output}


#: The guard's columns and their SQL types (SQLite, PostgreSQL), added to older tables on start.
GUARD_COLUMNS = (("guard_action", "TEXT", "text"), ("guard_stage", "TEXT", "text"), ("guard_rules", "TEXT", "text"),
                 ("guard_score", "REAL", "double precision"), ("guard_latency_s", "REAL", "double precision"),
                 ("guard_degraded", "INTEGER", "boolean"), ("guard_output", "TEXT", "text"))


class LedgerSink(Protocol):
    async def write(self, records: list[LedgerRecord]) -> None:
        """Insert ``records``, ignoring any whose ``record_id`` is already stored."""
        ...


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(LedgerRecord)

MAX_SPILL_SLOTS = 256
ORPHAN_SCAN_EVERY = 20  # flushes (10 intervals)

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: one process per spill path
    fcntl = None  # type: ignore[assignment]


def _try_lock(path: Path) -> int | None:
    """An exclusive, non-blocking lock on ``<path>.lock``; the fd to keep, or None if held elsewhere."""
    if fcntl is None:
        return -1
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(f"{path}.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    return fd


def _unlock(fd: int | None) -> None:
    if fd is not None and fd >= 0:
        os.close(fd)  # closing drops the flock


class Ledger:
    def __init__(
        self,
        sink: LedgerSink,
        spill_path: str | Path,
        *,
        clock: Clock,
        flush_interval_s: float = 0.5,
        batch_size: int = 2000,
        max_buffer: int = 100_000,
    ) -> None:
        self.sink = sink
        self.base_spill_path = Path(spill_path)
        self._slot_fd: int | None = None
        self.spill_path = self._claim_slot()
        self._finalizer = weakref.finalize(self, _unlock, self._slot_fd)
        self._flushes = 0
        self._stopping = False
        self.clock = clock
        self.flush_interval_s = flush_interval_s
        self.batch_size = batch_size
        self.max_buffer = max_buffer
        self._buffer: deque[LedgerRecord] = deque()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._prefix = os.urandom(6).hex()
        self._seq = 0
        self.written = 0
        self.spilled = 0
        self.replayed = 0
        self.sink_ok = True
        self.last_error: str | None = None

    def _slot(self, i: int) -> Path:
        base = self.base_spill_path
        return base if i == 0 else base.with_name(f"{base.stem}.{i}{base.suffix}")

    def _claim_slot(self) -> Path:
        for i in range(MAX_SPILL_SLOTS):
            fd = _try_lock(self._slot(i))
            if fd is not None:
                self._slot_fd = fd
                return self._slot(i)
        return self._slot(os.getpid() + MAX_SPILL_SLOTS)  # pragma: no cover - 256 live processes

    def _orphans(self) -> list[Path]:
        base = self.base_spill_path
        found = [base, *base.parent.glob(f"{base.stem}.*{base.suffix}")]
        return [p for p in found if p != self.spill_path and p.exists()]

    async def _adopt_orphans(self) -> None:
        """Replay the spill files of processes that died (their slot lock is free)."""
        for path in await asyncio.to_thread(self._orphans):
            fd = _try_lock(path)
            if fd is None:
                continue  # a live process owns it
            try:
                records = await asyncio.to_thread(self._read_spill, path)
                for i in range(0, len(records), self.batch_size):
                    await self.sink.write(records[i : i + self.batch_size])
                path.unlink(missing_ok=True)
            except Exception as exc:  # the sink failed again: the file stays for the next try
                self._sink_failed(exc)
                return
            else:
                self.replayed += len(records)
                if records:
                    log.info("replayed %d ledger records spilled by an earlier process (%s)", len(records), path)
            finally:
                _unlock(fd)

    def next_id(self) -> str:
        self._seq += 1
        return f"{self._prefix}-{self._seq:x}"

    def record(self, rec: LedgerRecord) -> None:
        """Queue one record; never blocks on the sink."""
        self._buffer.append(rec)
        if len(self._buffer) >= self.max_buffer:
            overflow = [self._buffer.popleft() for _ in range(len(self._buffer) // 2)]
            self._spill(overflow)
        if len(self._buffer) >= self.batch_size:
            self._wake.set()

    @property
    def pending(self) -> int:
        return len(self._buffer)

    def _spill(self, records: list[LedgerRecord]) -> None:
        if not records:
            return
        self.spill_path.parent.mkdir(parents=True, exist_ok=True)
        data = b"".join(_encoder.encode(r) + b"\n" for r in records)
        with open(self.spill_path, "ab") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        self.spilled += len(records)

    def _read_spill(self, path: Path | None = None) -> list[LedgerRecord]:
        path = path or self.spill_path
        try:
            lines = path.read_bytes().splitlines()
        except FileNotFoundError:
            return []
        out = []
        for line in lines:
            try:
                out.append(_decoder.decode(line))
            except msgspec.DecodeError:
                log.warning("skipping a torn line in %s", path)  # a crash mid-append
        return out

    async def flush(self) -> None:
        """Write what is buffered (and replay the spill file first if the sink is back)."""
        if self.spill_path.exists():
            spilled = await asyncio.to_thread(self._read_spill)
            try:
                for i in range(0, len(spilled), self.batch_size):
                    await self.sink.write(spilled[i : i + self.batch_size])
            except Exception as exc:
                self._sink_failed(exc)
                await asyncio.to_thread(self._spill, self._drain())
                return
            self.spill_path.unlink(missing_ok=True)
            self.replayed += len(spilled)
            if spilled:
                log.info("replayed %d spilled ledger records", len(spilled))
        while self._buffer:
            batch = [self._buffer.popleft() for _ in range(min(self.batch_size, len(self._buffer)))]
            try:
                await self.sink.write(batch)
            except asyncio.CancelledError:
                self._spill(batch)
                raise
            except Exception as exc:
                self._sink_failed(exc)
                await asyncio.to_thread(self._spill, batch + self._drain())
                return
            self.written += len(batch)
        if not self.sink_ok:
            log.info("ledger sink reachable again")
        self.sink_ok = True
        self.last_error = None
        if self._flushes % ORPHAN_SCAN_EVERY == 0:
            await self._adopt_orphans()
        self._flushes += 1

    def _drain(self) -> list[LedgerRecord]:
        out = list(self._buffer)
        self._buffer.clear()
        return out

    def _sink_failed(self, exc: Exception) -> None:
        if self.sink_ok:
            log.warning("ledger sink failed, spilling to %s: %s", self.spill_path, exc)
        self.sink_ok = False
        self.last_error = f"{type(exc).__name__}: {exc}"[:200]

    async def _run(self) -> None:
        clock = self.clock
        period_s = self.flush_interval_s / 2  # see "Durability bound" above
        due = clock.now() + period_s
        while not self._stopping:
            wait_s = due - clock.now()
            if wait_s > 0:
                await sleep_or_wake(clock, wait_s, self._wake)
            self._wake.clear()
            if clock.now() >= due:
                due = max(due + period_s, clock.now())
            try:
                await self.flush()
            except asyncio.CancelledError:
                raise
            except Exception:  # never let the flusher die
                log.exception("ledger flush failed")

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="ledger-flusher")

    async def stop(self, timeout_s: float = 10.0) -> None:
        """Let the flusher finish the write it is in (cancelling it mid-write would only spill a batch
        that is probably committed), then write what is left; spill it if the sink fails."""
        if self._task is not None:
            self._stopping = True
            self._wake.set()
            done, _ = await asyncio.wait({self._task}, timeout=timeout_s)
            if not done:
                self._task.cancel()
                try:
                    await self._task
                except asyncio.CancelledError:
                    pass
            self._task = None
        try:
            await self.flush()
        except Exception:
            self._spill(list(self._buffer))
            self._buffer.clear()
        self._finalizer()
        self._slot_fd = None

    def state(self) -> dict[str, object]:
        return {
            "status": "ok" if self.sink_ok else "degraded",
            "pending": len(self._buffer),
            "written": self.written,
            "spilled": self.spilled,
            "replayed": self.replayed,
            "last_error": self.last_error,
        }
