"""The SLO evaluator: every ``evaluate_interval_s`` it reads the window sums from the store, asks
:mod:`seawall.algorithms.burn_rate` which alerts fire, and acts on the changes.

- Each SLO is one component, one tier and one SLI (availability or latency); each has a page and a
  ticket alert. Counts come from the database, so every replica evaluates the same numbers and a
  restart loses no history; the alert state is in the database too (:meth:`SloStore.claim`), so
  exactly one replica sends each webhook and a restart does not page again.
- A page that fires opens an incident for its component (one unresolved incident per component)
  with a drafted first update; when every page on that component has resolved, the incident moves
  to ``monitoring``. People resolve it (admin API or CLI): a quiet five minutes is not proof.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import msgspec

from seawall.algorithms.burn_rate import (
    AlertTracker,
    BurnRateRule,
    Counts,
    Severity,
    budget_remaining,
    burn_rate,
    firing_rules,
)
from seawall.core.background import Background, sleep_or_wake
from seawall.env import Clock
from seawall.slo.settings import TierObjective
from seawall.slo.sli import AUTH, FRONT_DOOR, component_name, deployment_id, group_id
from seawall.slo.store import DAY_S, Incident, IncidentUpdate, SloStore, WindowRow

__all__ = ["AlertMessage", "SloEvaluator", "SloReport", "alert_key", "parse_alert_key"]

log = logging.getLogger("seawall.slo")

SLIS = ("availability", "latency")


def alert_key(component: str, tier: str, sli: str, severity: Severity) -> str:
    return f"{component}|{tier}|{sli}|{severity.value}"


def parse_alert_key(key: str) -> tuple[str, str, str, Severity]:
    component, tier, sli, severity = key.split("|")
    return component, tier, sli, Severity(severity)


class AlertMessage(msgspec.Struct, frozen=True):
    """What a webhook receives (the generic JSON format; Slack's is made from it)."""

    status: str  # firing | resolved
    alert: str  # the alert key; with ``started_at`` it identifies one firing (receivers dedupe on it)
    severity: str
    component: str
    component_name: str
    tier: str
    sli: str
    objective: float
    burn_rate: float | None
    rule: str | None  # e.g. page-1h-5m
    error_budget_remaining: float | None
    started_at: float
    resolved_at: float | None
    summary: str
    dedup_key: str


@dataclass
class SloReport:
    """One SLO's state at the last evaluation (``GET /admin/slo``)."""

    component: str
    tier: str
    sli: str
    objective: float
    window_days: int
    budget_remaining: float
    burn_rates: dict[str, float]
    firing: list[str]


@dataclass
class SloEvaluator:
    store: SloStore
    objectives: Mapping[str, TierObjective]
    rules: tuple[BurnRateRule, ...]
    clock: Clock
    bucket_s: int = 60
    interval_s: float = 30.0
    min_events: float = 10.0
    notify: Callable[[AlertMessage], None] | None = None
    groups: Mapping[str, list[str]] = field(default_factory=dict)  # model group -> its deployments
    tracker: AlertTracker = field(default_factory=AlertTracker, init=False)
    reports: list[SloReport] = field(default_factory=list, init=False)  # as of the last evaluation
    last_error: str | None = field(default=None, init=False)
    _loaded: bool = field(default=False, init=False)
    _bg: Background = field(default_factory=lambda: Background("slo-evaluator"), init=False)
    _wake: asyncio.Event = field(default_factory=asyncio.Event, init=False)

    @property
    def windows_s(self) -> list[int]:
        return sorted({w for r in self.rules for w in (r.long_window_s, r.short_window_s)})

    def paging(self) -> dict[str, set[str]]:
        """Components with a page firing -> the SLIs paging."""
        out: dict[str, set[str]] = {}
        for key in self.tracker.firing:
            component, _, sli, severity = parse_alert_key(key)
            if severity is Severity.PAGE:
                out.setdefault(component, set()).add(sli)
        return out

    async def evaluate(self) -> list[AlertMessage]:
        """One evaluation; returns the messages this replica sent (claimed transitions)."""
        now = self.clock.wall()
        if not self._loaded:  # pick up the alert state a previous process left
            self.tracker.firing.update(await self.store.firing())
            self._loaded = True
        rows = await self.store.windows(now, self.windows_s, self.bucket_s)
        budget_windows = sorted({o.window_days * DAY_S for o in self.objectives.values()})
        budgets = await self.store.windows(now, budget_windows, DAY_S)
        fine = _by_slo(rows)
        coarse = _by_slo(budgets)
        seen: set[str] = set()
        messages: list[AlertMessage] = []
        reports = []
        for (component, tier, sli), windows in sorted(fine.items()):
            objective = self.objectives.get(tier)
            if objective is None:
                continue
            target = _target(objective, sli)
            fired = firing_rules(self.rules, windows, target, self.min_events)
            budget = coarse.get((component, tier, sli), {}).get(objective.window_days * DAY_S, Counts())
            remaining = budget_remaining(budget, target)
            reports.append(SloReport(component, tier, sli, target, objective.window_days, round(remaining, 4),
                                     {_w(w): round(burn_rate(c, target), 3) for w, c in sorted(windows.items())},
                                     [r.name for r in fired]))
            for severity in Severity:
                key = alert_key(component, tier, sli, severity)
                seen.add(key)
                since = self.tracker.firing.get(key, now)
                change = self.tracker.update(key, severity, fired, now)
                if change is not None:
                    rate = burn_rate(windows[change.rule.short_window_s], target) if change.rule else None
                    msg = await self._act(key, change.firing, now, since, target, rate, change.rule, remaining)
                    if msg is not None:
                        messages.append(msg)
        for key in [k for k in self.tracker.firing if k not in seen]:  # no events at all any more: resolved
            component, tier, sli, severity = parse_alert_key(key)
            since = self.tracker.firing.pop(key)
            objective = self.objectives.get(tier)
            target = 0.0 if objective is None else _target(objective, sli)
            msg = await self._act(key, False, now, since, target, None, None, None)
            if msg is not None:
                messages.append(msg)
        self.reports = reports
        await self._incidents(messages, now)
        return messages

    async def _act(self, key: str, firing: bool, now: float, started: float, objective: float,
                   rate: float | None, rule: BurnRateRule | None, remaining: float | None) -> AlertMessage | None:
        if not await self.store.claim(key, firing, now):
            return None  # another replica (or an earlier run) already acted on this change
        component, tier, sli, severity = parse_alert_key(key)
        what = "errors" if sli == "availability" else "latency"
        name = component_name(component)
        if firing:
            summary = (f"Elevated {what} on {name} for {tier} traffic since {_hhmm(started)} UTC"
                       f" (burn rate {rate:.1f}x over {_w(rule.short_window_s) if rule else '?'})")
        else:
            summary = f"{name}: {what} for {tier} traffic back within objective since {_hhmm(now)} UTC"
        msg = AlertMessage(
            status="firing" if firing else "resolved", alert=key, severity=severity.value, component=component,
            component_name=name, tier=tier, sli=sli, objective=objective,
            burn_rate=None if rate is None else round(rate, 3), rule=rule.name if rule else None,
            error_budget_remaining=None if remaining is None else round(remaining, 4), started_at=started,
            resolved_at=None if firing else now, summary=summary, dedup_key=f"{key}@{int(started)}")
        if self.notify is not None:
            self.notify(msg)
        return msg

    async def _incidents(self, messages: list[AlertMessage], now: float) -> None:
        """Pages that fired this round open one incident for the components not already in an open one,
        named after the most specific (a failing deployment also fails its group and the front door:
        one incident, not three). An incident none of whose components still pages moves to monitoring."""
        pages = [m for m in messages if m.severity == Severity.PAGE.value]
        if not pages:
            return
        open_incidents = [i for i in await self.store.incidents(now, limit=200) if i.resolved_at is None]
        covered = self._covered(open_incidents)
        fired = sorted((m for m in pages if m.status == "firing" and m.component not in covered), key=_specificity)
        if fired:
            await self._open(fired, now)
        if any(m.status == "resolved" for m in pages):
            paging = self.paging()
            for incident in open_incidents:
                auto = incident.alert_key is not None and incident.alert_key.startswith("component:")
                if auto and incident.status in ("investigating", "identified") \
                        and not any(c in paging for c in incident.components):
                    names = ", ".join(component_name(c) for c in incident.components)
                    body = (f"Monitoring: error rates and latency on {names}"
                            f" have been back within their objectives since {_hhmm(now)} UTC."
                            " We are watching them before we resolve this incident.")
                    await self.store.add_update(IncidentUpdate(_id("upd", now), incident.id, "monitoring", body, now))

    def _covered(self, incidents: list[Incident]) -> set[str]:
        """Components an open incident already speaks for: its own, the front door and auth (which
        every outage below them shows through), and the group of each deployment and the other way round."""
        covered = {c for i in incidents for c in i.components}
        if covered:
            covered |= {FRONT_DOOR, AUTH}
        for group, deployments in self.groups.items():
            ids = {deployment_id(d) for d in deployments}
            if group_id(group) in covered or ids & covered:
                covered |= ids | {group_id(group)}
        return covered

    async def _open(self, fired: list[AlertMessage], now: float) -> None:
        first = fired[0]
        components = list(dict.fromkeys(m.component for m in fired))
        tiers = ", ".join(dict.fromkeys(m.tier for m in fired if m.component == first.component))
        what = "elevated errors" if first.sli == "availability" else "elevated latency"
        scope = f"model group {first.component.partition(':')[2]}" if first.component.startswith("group:") \
            else first.component_name
        body = (f"Investigating: {what} on {scope} for {tiers} traffic since {_hhmm(first.started_at)} UTC."
                " We are looking into it and will post an update here.")
        ident = _id("inc", now)
        availability = any(m.sli == "availability" for m in fired)
        incident = Incident(id=ident, name=f"{what.capitalize()} on {first.component_name}", status="investigating",
                            impact="major" if availability else "minor", components=components,
                            alert_key=f"component:{first.component}", created_at=now, updated_at=now,
                            resolved_at=None)
        await self.store.open_incident(incident, IncidentUpdate(_id("upd", now), ident, "investigating", body, now))

    async def _run(self) -> None:
        while True:
            try:
                await self.evaluate()
                self.last_error = None
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if self.last_error is None:
                    log.warning("SLO evaluation failed: %s", exc)
                self.last_error = f"{type(exc).__name__}: {exc}"[:200]
            await sleep_or_wake(self.clock, self.interval_s, self._wake)
            self._wake.clear()

    def start(self) -> None:
        self._bg.start(self._run)

    async def stop(self) -> None:
        await self._bg.stop()

    def state(self) -> dict[str, Any]:
        return {"status": "ok" if self.last_error is None else "degraded", "last_error": self.last_error,
                "firing": sorted(self.tracker.firing)}


def _specificity(msg: AlertMessage) -> tuple[int, str]:
    """Deployments first, then model groups, auth, the front door; availability before latency."""
    kind = msg.component.partition(":")[0]
    rank = {"deployment": 0, "group": 1, "auth": 2}.get(kind, 3)
    return rank, "0" if msg.sli == "availability" else "1"


def _target(objective: TierObjective, sli: str) -> float:
    return objective.availability if sli == "availability" else objective.latency


def _by_slo(rows: list[WindowRow]) -> dict[tuple[str, str, str], dict[int, Counts]]:
    out: dict[tuple[str, str, str], dict[int, Counts]] = {}
    for r in rows:
        out.setdefault((r.component, r.tier, "availability"), {})[r.window_s] = Counts(r.total, r.bad)
        out.setdefault((r.component, r.tier, "latency"), {})[r.window_s] = Counts(r.lat_total, r.lat_slow)
    return out


_seq = itertools.count(1)


def _id(prefix: str, now: float) -> str:
    """Sortable by time, unique across replicas (random part) and within one (sequence)."""
    return f"{prefix}_{int(now * 1000):x}{os.urandom(3).hex()}{next(_seq):x}"


def _hhmm(ts: float) -> str:
    return time.strftime("%H:%M", time.gmtime(ts))


def _w(seconds: int) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"
