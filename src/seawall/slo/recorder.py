"""SLI counters in time buckets, written to the SLO store in batches off the request path.

``record()`` is the observe policy's ``on_finish`` hook (beside the ledger's): a few dict updates
per request, no I/O. A background task adds what accumulated to the store every
``flush_interval_s``, at two resolutions (fine buckets for alerts, day buckets for the 90-day bars
and budgets). If the store fails, the counts stay in memory and are added at the next flush (they
are sums, so merging is exact); past ``max_pending_rows`` distinct buckets the oldest are dropped
and counted in ``dropped``. What a SIGKILL loses is at most one flush interval of counts.

The same counts are exported as ``seawall_slo_events_total{component,tier,sli,outcome}`` (updated at
each flush), which is what the generated Prometheus rules read.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING

from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

from seawall.core.background import Background, sleep_or_wake
from seawall.core.types import Request, Response
from seawall.env import Clock
from seawall.slo.settings import TierObjective
from seawall.slo.sli import AUTH, FRONT_DOOR, deployment_id, group_id, outcome
from seawall.slo.store import DAY_S, CountRow, SloStore

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

__all__ = ["UNAUTHENTICATED", "SloRecorder"]

log = logging.getLogger("seawall.slo")

UNAUTHENTICATED = "unauthenticated"
NO_DEPLOYMENT_REASONS = frozenset({"breaker_open", "all_ejected", "no_deployment"})
PURGE_EVERY_S = 3600.0

# per (bucket start, component, tier): total, bad, lat_total, lat_slow, lat_sum_s
_Key = tuple[int, str, str]


class SloRecorder:
    def __init__(self, store: SloStore, objectives: Mapping[str, TierObjective], groups: Mapping[str, list[str]], *,
                 clock: Clock, bucket_s: int = 60, flush_interval_s: float = 5.0,
                 minute_retention_days: int = 8, max_pending_rows: int = 200_000) -> None:
        self.store = store
        self.objectives = dict(objectives)
        self.groups = {name: list(deployments) for name, deployments in groups.items()}  # group -> deployments
        self.clock = clock
        self.bucket_s = bucket_s
        self.flush_interval_s = flush_interval_s
        self.minute_retention_days = minute_retention_days
        self.max_pending_rows = max_pending_rows
        self._pending: dict[_Key, list[float]] = {}
        self.totals: dict[tuple[str, str, str, str], float] = {}  # component, tier, sli, outcome
        self._bg = Background("slo-flusher")
        self._wake = asyncio.Event()
        self._last_purge_s = -PURGE_EVERY_S
        self.store_ok = True
        self.dropped = 0
        self.flushed_rows = 0

    # -- request path ------------------------------------------------------------------------
    def record(self, request: Request, response: Response | None, status: int, reason: str) -> None:
        """Count one finished request for each component it touched (see :mod:`seawall.slo.sli`)."""
        bucket = int(self.clock.wall() // self.bucket_s) * self.bucket_s
        principal = request.ctx.principal
        if principal is None:  # refused before auth knew the caller: auth's own failure or a bad key
            if status in (401, 403):
                self._add((bucket, AUTH, UNAUTHENTICATED), False, None, 0.0)
            elif status >= 500 and status != 503:
                self._add((bucket, AUTH, UNAUTHENTICATED), True, None, 0.0)
                self._add((bucket, FRONT_DOOR, UNAUTHENTICATED), True, None, 0.0)
            return
        tier = principal.tier
        objective = self.objectives.get(tier)
        if objective is None:
            return
        o = outcome(tier, status, reason, self.clock.now() - request.received_at, request.ctx.ttft_s, objective)
        if o.bad is None:
            return
        self._add((bucket, FRONT_DOOR, tier), o.bad, o.slow, o.latency_s)
        self._add((bucket, AUTH, tier), False, None, 0.0)  # it got past auth
        # Never parse here: a request shed before its body was read (the tier alone decided) has no
        # model group, and parsing it now would make shedding cost what it exists to avoid.
        payload = request.parsed_payload
        model = payload.model if payload is not None else None
        if model in self.groups:
            self._add((bucket, group_id(model), tier), o.bad, o.slow, o.latency_s)
        tried = request.ctx.deployments_tried
        if tried:
            for name in tried[:-1]:  # the request had to leave these
                self._add((bucket, deployment_id(name), tier), True, None, 0.0)
            self._add((bucket, deployment_id(tried[-1]), tier), o.bad, o.slow, o.latency_s)
        elif o.bad and reason in NO_DEPLOYMENT_REASONS and model is not None and model in self.groups:
            for name in self.groups[model]:  # every deployment was out (breaker open, ejected): each failed it
                self._add((bucket, deployment_id(name), tier), True, None, 0.0)

    def _add(self, key: _Key, bad: bool, slow: bool | None, latency_s: float) -> None:
        row = self._pending.get(key)
        if row is None:
            row = self._pending[key] = [0.0, 0.0, 0.0, 0.0, 0.0]
        row[0] += 1
        if bad:
            row[1] += 1
        if slow is not None:
            row[2] += 1
            row[4] += latency_s
            if slow:
                row[3] += 1

    # -- background ------------------------------------------------------------------------
    def _drain(self) -> dict[_Key, list[float]]:
        pending, self._pending = self._pending, {}
        totals = self.totals
        for (_, component, tier), (total, bad, lat_total, lat_slow, _s) in pending.items():
            for sli, outcome_, n in (("availability", "good", total - bad), ("availability", "bad", bad),
                                     ("latency", "good", lat_total - lat_slow), ("latency", "bad", lat_slow)):
                k = (component, tier, sli, outcome_)
                totals[k] = totals.get(k, 0.0) + n
        return pending

    def rows(self, pending: Mapping[_Key, list[float]]) -> list[CountRow]:
        """The fine rows and, summed into them, the day rows of ``pending``."""
        days: dict[_Key, list[float]] = {}
        out = []
        for (bucket, component, tier), vals in pending.items():
            out.append(_row(self.bucket_s, bucket, component, tier, vals))
            day_key = (bucket // DAY_S * DAY_S, component, tier)
            acc = days.setdefault(day_key, [0.0] * 5)
            for i, v in enumerate(vals):
                acc[i] += v
        out += [_row(DAY_S, b, c, t, vals) for (b, c, t), vals in days.items()]
        return out

    async def flush(self) -> None:
        pending = self._drain()
        if not pending:
            return
        try:
            await self.store.add(self.rows(pending))
        except asyncio.CancelledError:
            self._merge_back(pending)
            raise
        except Exception as exc:
            if self.store_ok:
                log.warning("SLO store failed; counters kept in memory until it answers: %s", exc)
            self.store_ok = False
            self._merge_back(pending)
            return
        self.flushed_rows += len(pending)
        if not self.store_ok:
            log.info("SLO store reachable again")
        self.store_ok = True
        now = self.clock.wall()
        if now - self._last_purge_s >= PURGE_EVERY_S:
            self._last_purge_s = now
            await self.store.purge(self.bucket_s, now - self.minute_retention_days * DAY_S)
            await self.store.purge(DAY_S, now - 400 * DAY_S)

    def _merge_back(self, pending: dict[_Key, list[float]]) -> None:
        """Put counts that were not written back in front of what came since (exact: they are sums)."""
        for key, vals in self._pending.items():
            acc = pending.setdefault(key, [0.0] * 5)
            for i, v in enumerate(vals):
                acc[i] += v
        if len(pending) > self.max_pending_rows:
            for key in sorted(pending)[: len(pending) - self.max_pending_rows]:
                self.dropped += int(pending.pop(key)[0])
        self._pending = pending

    async def _run(self) -> None:
        while True:
            await sleep_or_wake(self.clock, self.flush_interval_s, self._wake)
            self._wake.clear()
            try:
                await self.flush()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("SLO flush failed")

    def start(self) -> None:
        self._bg.start(self._run)

    async def stop(self) -> None:
        await self._bg.stop()
        try:
            await self.flush()
        except Exception as exc:  # the counts of the last interval are lost; say so
            log.warning("SLO counters not written at shutdown: %s", exc)

    def state(self) -> dict[str, object]:
        return {"status": "ok" if self.store_ok else "degraded", "pending_rows": len(self._pending),
                "dropped": self.dropped}

    def register(self, registry: CollectorRegistry) -> None:
        registry.register(_EventsCollector(self))


def _row(resolution_s: int, bucket: int, component: str, tier: str, vals: list[float]) -> CountRow:
    return CountRow(resolution_s, bucket, component, tier, int(vals[0]), int(vals[1]), int(vals[2]), int(vals[3]),
                    vals[4])


class _EventsCollector(Collector):
    NAME = "seawall_slo_events"

    def __init__(self, recorder: SloRecorder) -> None:
        self.recorder = recorder

    def collect(self) -> Iterator[CounterMetricFamily]:
        family = CounterMetricFamily(self.NAME, "SLI events by component, tier, SLI and outcome (good/bad).",
                                     labels=["component", "tier", "sli", "outcome"])
        for labels, value in list(self.recorder.totals.items()):
            family.add_metric(list(labels), value)
        yield family

    def describe(self) -> Iterator[CounterMetricFamily]:
        yield CounterMetricFamily(self.NAME, "SLI events.", labels=["component", "tier", "sli", "outcome"])
