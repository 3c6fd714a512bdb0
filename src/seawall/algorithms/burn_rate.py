"""Error budgets and multiwindow, multi-burn-rate alerts (Google SRE workbook, "Alerting on SLOs").

An SLO with objective ``o`` (say 0.999) allows an error ratio of ``1 - o``: the *error budget*.
The *burn rate* over a window is the observed error ratio divided by that allowance: 1.0 spends
exactly the budget over the SLO window, 14.4 spends 2% of a 30-day budget in one hour.

A rule fires when the burn rate is above its factor over BOTH a long window (the evidence is
significant) and a short one (it is still happening, so the alert resolves minutes after the
problem ends instead of an hour later). The workbook's defaults, in :data:`DEFAULT_RULES`:

======== ======= ============ =============
severity  factor  long window  short window
======== ======= ============ =============
page      14.4x   1 h          5 m
page      6x      6 h          30 m
ticket    1x      3 d          6 h
======== ======= ============ =============

Pure: counts and times come in as arguments, decisions come out. :class:`AlertTracker` turns the
per-evaluation verdicts into ``fired`` / ``resolved`` transitions once per alert (deduplication is
the tracker's job, not the delivery's).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

__all__ = [
    "DEFAULT_RULES",
    "AlertTracker",
    "BurnRateRule",
    "ComponentState",
    "Counts",
    "Severity",
    "StateThresholds",
    "Transition",
    "budget_remaining",
    "burn_rate",
    "component_state",
    "firing_rules",
]


@dataclass(frozen=True, slots=True)
class Counts:
    """Events an SLI counted in a window: ``total`` valid events, ``bad`` of them failed it."""

    total: float = 0.0
    bad: float = 0.0

    def __add__(self, other: Counts) -> Counts:
        return Counts(self.total + other.total, self.bad + other.bad)

    @property
    def error_ratio(self) -> float:
        """Share of bad events; 0.0 without events (no traffic spends no budget)."""
        return self.bad / self.total if self.total > 0 else 0.0


class Severity(enum.Enum):
    PAGE = "page"
    TICKET = "ticket"


@dataclass(frozen=True, slots=True)
class BurnRateRule:
    severity: Severity
    factor: float  # burn rate that fires: 14.4 spends 2% of a 30-day budget in an hour
    long_window_s: int
    short_window_s: int

    @property
    def name(self) -> str:
        return f"{self.severity.value}-{_span(self.long_window_s)}-{_span(self.short_window_s)}"


DEFAULT_RULES: tuple[BurnRateRule, ...] = (
    BurnRateRule(Severity.PAGE, 14.4, 3600, 300),
    BurnRateRule(Severity.PAGE, 6.0, 6 * 3600, 1800),
    BurnRateRule(Severity.TICKET, 1.0, 3 * 86400, 6 * 3600),
)


def burn_rate(counts: Counts, objective: float) -> float:
    """Observed error ratio / allowed error ratio. ``objective`` in (0, 1)."""
    allowed = 1.0 - objective
    if allowed <= 0:
        return float("inf") if counts.bad > 0 else 0.0
    return counts.error_ratio / allowed


def budget_remaining(counts: Counts, objective: float) -> float:
    """Share of the window's error budget left: 1.0 untouched, 0.0 spent, negative overspent."""
    return 1.0 - burn_rate(counts, objective)


def firing_rules(rules: Iterable[BurnRateRule], windows: Mapping[int, Counts], objective: float,
                 min_events: float = 1.0) -> list[BurnRateRule]:
    """Rules whose burn rate is at or above their factor over both of their windows.

    ``windows`` maps a window length in seconds to the counts over the last that many seconds (a
    missing window counts as no events). A long window with fewer than ``min_events`` events never
    fires: one failed request out of one is no evidence.
    """
    out = []
    for rule in rules:
        long = windows.get(rule.long_window_s, Counts())
        short = windows.get(rule.short_window_s, Counts())
        if long.total < min_events or short.total <= 0:
            continue
        if burn_rate(long, objective) >= rule.factor and burn_rate(short, objective) >= rule.factor:
            out.append(rule)
    return out


@dataclass(frozen=True, slots=True)
class Transition:
    key: str  # which alert: SLO and severity
    severity: Severity
    firing: bool  # True: it fired now; False: it resolved now
    at_s: float
    rule: BurnRateRule | None  # the fastest rule that fired (None on resolve)


@dataclass
class AlertTracker:
    """Per alert key, whether it is firing; :meth:`update` returns only the changes.

    An alert key is one SLO and one severity: the two page rules of an SLO are one page (the
    faster rule that fires is named in the transition), so a page does not fire twice.
    """

    firing: dict[str, float] = field(default_factory=dict)  # key -> since (seconds)

    def update(self, key: str, severity: Severity, fired: list[BurnRateRule], now_s: float) -> Transition | None:
        rules = [r for r in fired if r.severity is severity]
        was = key in self.firing
        if rules and not was:
            self.firing[key] = now_s
            return Transition(key, severity, True, now_s, max(rules, key=lambda r: r.factor))
        if not rules and was:
            del self.firing[key]
            return Transition(key, severity, False, now_s, None)
        return None


class ComponentState(enum.Enum):
    """Statuspage's component statuses, worst last but for maintenance."""

    OPERATIONAL = "operational"
    DEGRADED_PERFORMANCE = "degraded_performance"
    PARTIAL_OUTAGE = "partial_outage"
    MAJOR_OUTAGE = "major_outage"
    UNDER_MAINTENANCE = "under_maintenance"

    @property
    def rank(self) -> int:
        return _RANK[self]


_RANK = {ComponentState.OPERATIONAL: 0, ComponentState.UNDER_MAINTENANCE: 1,
         ComponentState.DEGRADED_PERFORMANCE: 2, ComponentState.PARTIAL_OUTAGE: 3, ComponentState.MAJOR_OUTAGE: 4}


@dataclass(frozen=True, slots=True)
class StateThresholds:
    """How a component's recent SLIs map to a state. Ratios are of the events in the state window."""

    degraded_error_ratio: float = 0.01
    partial_error_ratio: float = 0.10
    major_error_ratio: float = 0.50
    degraded_slow_ratio: float = 0.10  # share of answers slower than the latency threshold
    min_events: float = 10.0  # fewer events than this in the window: no evidence, operational


def component_state(availability: Counts, latency: Counts, *, paging: bool = False, maintenance: bool = False,
                    thresholds: StateThresholds = StateThresholds()) -> ComponentState:
    """The state a status page shows for one component.

    ``availability`` and ``latency`` are its counts over the recent state window (all tiers);
    ``paging`` says a page alert on it is firing, which is at least a partial outage (the budget is
    burning fast even if the last minutes' ratio is low). Maintenance wins unless it is a major outage.
    """
    t = thresholds
    state = ComponentState.OPERATIONAL
    if availability.total >= t.min_events:
        ratio = availability.error_ratio
        if ratio >= t.major_error_ratio:
            state = ComponentState.MAJOR_OUTAGE
        elif ratio >= t.partial_error_ratio:
            state = ComponentState.PARTIAL_OUTAGE
        elif ratio >= t.degraded_error_ratio:
            state = ComponentState.DEGRADED_PERFORMANCE
    if state.rank < ComponentState.DEGRADED_PERFORMANCE.rank and latency.total >= t.min_events \
            and latency.error_ratio >= t.degraded_slow_ratio:
        state = ComponentState.DEGRADED_PERFORMANCE
    if paging and state.rank < ComponentState.PARTIAL_OUTAGE.rank:
        state = ComponentState.PARTIAL_OUTAGE
    if maintenance and state is not ComponentState.MAJOR_OUTAGE:
        state = ComponentState.UNDER_MAINTENANCE
    return state


def _span(seconds: int) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"
