"""What the status page shows, computed from the SLO store: one :class:`StatusView` per refresh.

Pure functions of their inputs (rows, incidents, settings, now), so the views are tested without
a server; :mod:`seawall.edges.status.board` does the I/O and keeps the latest render.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from seawall.algorithms.burn_rate import ComponentState, Counts, StateThresholds, component_state
from seawall.slo.settings import MaintenanceSettings
from seawall.slo.sli import component_name
from seawall.slo.store import DAY_S, CountRow, Incident, WindowRow

__all__ = ["ComponentView", "DayBar", "StatusView", "build_view", "iso", "overall"]


def iso(ts: float | None) -> str | None:
    """Statuspage's timestamp format (ISO 8601 with milliseconds, UTC)."""
    if ts is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{int(ts * 1000) % 1000:03d}Z"


@dataclass(frozen=True, slots=True)
class DayBar:
    day_s: int  # unix seconds at 00:00 UTC
    total: int
    bad: int

    @property
    def uptime(self) -> float | None:
        return None if self.total == 0 else 1.0 - self.bad / self.total


@dataclass(frozen=True, slots=True)
class ComponentView:
    id: str
    name: str
    position: int
    state: ComponentState
    recent: Counts
    days: list[DayBar]

    @property
    def uptime(self) -> float | None:
        total = sum(d.total for d in self.days)
        return None if total == 0 else 1.0 - sum(d.bad for d in self.days) / total


@dataclass(frozen=True, slots=True)
class StatusView:
    title: str
    url: str
    now_s: float
    components: list[ComponentView]
    incidents: list[Incident]
    maintenances: list[MaintenanceSettings]
    latency_series: list[tuple[int, float | None]]  # (slot start, mean seconds) for the front door, last 24 h
    uptime_days: int
    stale: bool = False
    created_s: float = field(default=0.0)

    @property
    def indicator(self) -> tuple[str, str]:
        return overall([c.state for c in self.components],
                       [i.impact for i in self.incidents if i.resolved_at is None])


_INDICATOR = {ComponentState.MAJOR_OUTAGE: ("critical", "Major System Outage"),
              ComponentState.PARTIAL_OUTAGE: ("major", "Partial System Outage"),
              ComponentState.DEGRADED_PERFORMANCE: ("minor", "Minor Service Outage"),
              ComponentState.UNDER_MAINTENANCE: ("none", "Service Under Maintenance"),
              ComponentState.OPERATIONAL: ("none", "All Systems Operational")}
_IMPACT_RANK = {"none": 0, "minor": 1, "major": 2, "critical": 3}


def overall(states: Iterable[ComponentState], open_impacts: Iterable[str]) -> tuple[str, str]:
    """Statuspage's page indicator (none, minor, major, critical) and its description."""
    worst = max(states, key=lambda s: s.rank, default=ComponentState.OPERATIONAL)
    indicator, description = _INDICATOR[worst]
    impact = max(open_impacts, key=lambda i: _IMPACT_RANK.get(i, 0), default="none")
    if _IMPACT_RANK.get(impact, 0) > _IMPACT_RANK[indicator]:  # an operator's incident says worse
        indicator = impact
        description = {"minor": "Minor Service Outage", "major": "Partial System Outage",
                       "critical": "Major System Outage"}[impact]
    return indicator, description


def active_maintenance(maintenances: Iterable[MaintenanceSettings], now_s: float) -> list[MaintenanceSettings]:
    now = datetime.fromtimestamp(now_s, UTC)
    return [m for m in maintenances if m.starts_at <= now < m.ends_at]


def build_view(*, title: str, url: str, now_s: float, component_ids: list[str], recent: list[WindowRow],
               days: list[CountRow], fine: list[CountRow], incidents: list[Incident],
               maintenances: list[MaintenanceSettings], paging: Mapping[str, set[str]], uptime_days: int,
               bucket_s: int, thresholds: StateThresholds = StateThresholds(), chart_slot_s: int = 900) -> StatusView:
    """Each component's state, its day bars and uptime; the front door's response time by slot."""
    avail: dict[str, Counts] = {}
    lat: dict[str, Counts] = {}
    for r in recent:  # all tiers together: the page speaks for the service, not one customer
        avail[r.component] = avail.get(r.component, Counts()) + Counts(r.total, r.bad)
        lat[r.component] = lat.get(r.component, Counts()) + Counts(r.lat_total, r.lat_slow)
    per_day: dict[tuple[str, int], list[int]] = {}
    for d in days:
        acc = per_day.setdefault((d.component, d.bucket_s), [0, 0])
        acc[0] += d.total
        acc[1] += d.bad
    today = int(now_s // DAY_S) * DAY_S
    day_starts = [today - i * DAY_S for i in range(uptime_days - 1, -1, -1)]
    in_maintenance = active_maintenance(maintenances, now_s)
    views = []
    for position, cid in enumerate(component_ids, start=1):
        maintenance = any(not m.components or cid in m.components for m in in_maintenance)
        state = component_state(avail.get(cid, Counts()), lat.get(cid, Counts()), paging=cid in paging,
                                maintenance=maintenance, thresholds=thresholds)
        bars = [DayBar(d, *per_day.get((cid, d), [0, 0])) for d in day_starts]
        views.append(ComponentView(cid, component_name(cid), position, state, avail.get(cid, Counts()), bars))
    series = _latency_series(fine, now_s, chart_slot_s)
    return StatusView(title, url, now_s, views, incidents, maintenances, series, uptime_days, created_s=now_s)


def _latency_series(rows: list[CountRow], now_s: float, slot_s: int, hours: int = 24) -> list[tuple[int, float | None]]:
    end = int(now_s // slot_s) * slot_s
    start = end - (hours * 3600 // slot_s - 1) * slot_s
    sums: dict[int, list[float]] = {}
    for r in rows:
        if r.component != "front_door" or r.bucket_s < start:
            continue
        acc = sums.setdefault(r.bucket_s // slot_s * slot_s, [0.0, 0.0])
        acc[0] += r.lat_sum_s
        acc[1] += r.lat_total
    out: list[tuple[int, float | None]] = []
    for slot in range(start, end + 1, slot_s):
        got = sums.get(slot)
        out.append((slot, got[0] / got[1] if got and got[1] else None))
    return out
