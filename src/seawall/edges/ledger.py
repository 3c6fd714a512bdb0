"""The usage ledger: one record per request, written in batches off the request path.

``record()`` is an O(1) append to a bounded in-memory buffer. A background task flushes the buffer
every ``flush_interval_s`` (or sooner when ``batch_size`` records wait) to a sink (SQLite by
default, PostgreSQL beyond one machine). When the sink fails, the batch goes to a local
append-only spill file (JSON lines, fsynced) and is replayed, oldest first, once the sink answers
again. Every record carries a unique ``record_id`` made when it is created, and sinks insert with
"ignore duplicates", so a replay after a crash between "written" and "spill truncated" cannot
double count. If the buffer fills faster than the sink drains, the overflow is spilled at once
rather than dropped.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections import deque
from pathlib import Path
from typing import Protocol

import msgspec

from seawall.env import Clock

__all__ = ["Ledger", "LedgerRecord", "LedgerSink"]

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


class LedgerSink(Protocol):
    async def write(self, records: list[LedgerRecord]) -> None:
        """Insert ``records``, ignoring any whose ``record_id`` is already stored."""
        ...


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(LedgerRecord)


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
        self.spill_path = Path(spill_path)
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

    def _read_spill(self) -> list[LedgerRecord]:
        try:
            lines = self.spill_path.read_bytes().splitlines()
        except FileNotFoundError:
            return []
        out = []
        for line in lines:
            try:
                out.append(_decoder.decode(line))
            except msgspec.DecodeError:
                log.warning("skipping a torn line in %s", self.spill_path)  # a crash mid-append
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
        while True:
            try:
                await asyncio.wait_for(self._wake.wait(), self.flush_interval_s)
            except TimeoutError:
                pass
            self._wake.clear()
            try:
                await self.flush()
            except asyncio.CancelledError:
                raise
            except Exception:  # never let the flusher die
                log.exception("ledger flush failed")

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="ledger-flusher")

    async def stop(self) -> None:
        if self._task is not None:
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

    def state(self) -> dict[str, object]:
        return {
            "status": "ok" if self.sink_ok else "degraded",
            "pending": len(self._buffer),
            "written": self.written,
            "spilled": self.spilled,
            "replayed": self.replayed,
            "last_error": self.last_error,
        }
