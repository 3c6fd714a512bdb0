"""The SLO store's contract and its rows; SQLite and PostgreSQL implement it in ``edges/stores``.

Counters are kept at two resolutions: fine buckets (``slo.bucket_s``, a minute by default) for the
alert windows and the recent state, kept ``minute_retention_days``; day buckets for the 90-day
uptime bars and the 28-day budgets, kept 400 days. A flush *adds* to a row (upsert), so any number
of replicas write into the same buckets and a restart loses nothing that was flushed.

Alert state lives here too: a transition is claimed with a conditional write, so among replicas
evaluating the same counters exactly one sends each webhook and opens each incident, and a restart
does not page again for an alert that is still firing.
"""

from __future__ import annotations

from typing import Protocol

import msgspec

__all__ = ["DAY_S", "INCIDENT_STATUSES", "CountRow", "Incident", "IncidentUpdate", "SloStore", "WindowRow"]

DAY_S = 86400


class CountRow(msgspec.Struct, frozen=True, array_like=True):
    resolution_s: int
    bucket_s: int  # unix seconds at the bucket's start
    component: str
    tier: str
    total: int  # events counted for availability
    bad: int
    lat_total: int  # events counted for latency
    lat_slow: int
    lat_sum_s: float  # sum of the latencies counted (TTFT for streams), for the response-time chart


class WindowRow(msgspec.Struct, frozen=True):
    """Sums over the last ``window_s`` seconds for one component and tier."""

    component: str
    tier: str
    window_s: int
    total: int
    bad: int
    lat_total: int
    lat_slow: int


class IncidentUpdate(msgspec.Struct, frozen=True):
    id: str
    incident_id: str
    status: str  # investigating | identified | monitoring | resolved
    body: str
    created_at: float


class Incident(msgspec.Struct, frozen=True):
    id: str
    name: str
    status: str
    impact: str  # none | minor | major | critical
    components: list[str]
    alert_key: str | None
    created_at: float
    updated_at: float
    resolved_at: float | None
    updates: list[IncidentUpdate] = []


INCIDENT_STATUSES = ("investigating", "identified", "monitoring", "resolved")


class SloStore(Protocol):
    async def add(self, rows: list[CountRow]) -> None:
        """Add each row's counts to its bucket (creating it)."""
        ...

    async def windows(self, now_s: float, windows_s: list[int], resolution_s: int) -> list[WindowRow]:
        """For each component, tier and window: sums over buckets starting at or after ``now_s - window``."""
        ...

    async def buckets(self, resolution_s: int, since_s: float, component: str | None = None) -> list[CountRow]:
        """Rows of one resolution since ``since_s`` (the status page's bars and chart), of one component
        or all."""
        ...

    async def purge(self, resolution_s: int, before_s: float) -> int: ...

    async def claim(self, alert_key: str, firing: bool, at_s: float) -> bool:
        """Move an alert to firing / resolved; True if this call changed it (then notify)."""
        ...

    async def firing(self) -> dict[str, float]:
        """Alerts firing now, with the time they fired."""
        ...

    async def open_incident(self, incident: Incident, first: IncidentUpdate) -> bool:
        """Create it unless an unresolved incident with the same ``alert_key`` exists."""
        ...

    async def add_update(self, update: IncidentUpdate) -> Incident | None:
        """Append an update and move the incident to its status (``resolved`` closes it)."""
        ...

    async def incident_for_alert(self, alert_key: str) -> Incident | None:
        """The unresolved incident an alert opened, if any."""
        ...

    async def incidents(self, since_s: float, limit: int = 50) -> list[Incident]:
        """Unresolved incidents and those updated since ``since_s``, newest first, with updates."""
        ...

    async def close(self) -> None: ...
