"""Burn-rate maths on a synthetic per-minute error series: each alert fires and resolves at the
minute the SRE workbook's multiwindow rules say it should."""

from __future__ import annotations

import pytest

from seawall.algorithms.burn_rate import (
    DEFAULT_RULES,
    AlertTracker,
    ComponentState,
    Counts,
    Severity,
    budget_remaining,
    burn_rate,
    component_state,
    firing_rules,
)

OBJECTIVE = 0.999  # budget: 0.1% errors


def run(series: list[Counts]) -> list[tuple[int, str, bool]]:
    """Evaluate the default rules after each minute; the windows are sums over the last n complete
    minutes (prefix sums, so three days of minutes evaluate in milliseconds)."""
    totals, bads = [0.0], [0.0]
    for c in series:
        totals.append(totals[-1] + c.total)
        bads.append(bads[-1] + c.bad)
    spans = {w for rule in DEFAULT_RULES for w in (rule.long_window_s, rule.short_window_s)}
    tracker = AlertTracker()
    events = []
    for minute in range(1, len(series) + 1):
        windows = {}
        for w in spans:
            start = max(0, minute - w // 60)
            windows[w] = Counts(totals[minute] - totals[start], bads[minute] - bads[start])
        fired = firing_rules(DEFAULT_RULES, windows, OBJECTIVE, min_events=10)
        for severity in Severity:
            change = tracker.update(f"x|{severity.value}", severity, fired, minute * 60.0)
            if change is not None:
                events.append((minute, severity.value, change.firing))
    return events


def test_burn_rate_is_the_error_ratio_over_the_allowance():
    assert burn_rate(Counts(1000, 1), 0.999) == pytest.approx(1.0)
    assert burn_rate(Counts(1000, 20), 0.999) == pytest.approx(20.0)
    assert burn_rate(Counts(0, 0), 0.999) == 0.0
    assert budget_remaining(Counts(1000, 0), 0.999) == 1.0
    assert budget_remaining(Counts(10_000, 5), 0.999) == pytest.approx(0.5)
    assert budget_remaining(Counts(1000, 3), 0.999) == pytest.approx(-2.0)


def test_a_2_percent_error_burst_pages_at_minute_44_and_resolves_2_minutes_after_it_ends():
    # 100 requests a minute; three clean days, then 2% errors (20x burn) for an hour, then clean again.
    clean_days = 3 * 24 * 60
    series = [Counts(100, 0)] * clean_days + [Counts(100, 2)] * 60 + [Counts(100, 0)] * 60
    events = run(series)
    # 1 h window: 2k errors / 6000 >= 14.4 * 0.001 needs k >= 43.2 error minutes -> fires after minute 44.
    # 5 m window after the burst: 2(5 - j)/500 >= 0.0144 holds for j <= 1 clean minutes -> resolves at +2.
    # The 6x rule never fires (6 h window: 120/36000 < 0.6%), nor the ticket (3 d window: 120/432000 < 0.1%).
    assert events == [(clean_days + 44, "page", True), (clean_days + 60 + 2, "page", False)]


def test_a_slow_burn_tickets_but_never_pages():
    # 0.2% errors (2x) for long enough: the 6 h short window and the 3 d long window both burn >= 1x.
    series = [Counts(1000, 2)] * (8 * 60)
    events = run(series)
    assert [sev for _, sev, firing in events if firing] == ["ticket"]
    ticket_minute = next(m for m, sev, _ in events if sev == "ticket")
    assert ticket_minute <= 10  # both windows over 1x as soon as there are 10 events with errors


def test_the_6x_rule_pages_a_burn_the_14x_rule_misses():
    # 0.8% errors (8x): below 14.4x, above 6x. The 6 h window needs 6x over 6 h: with 8x from the start
    # of the series (no clean history), it fires once the 30 m window has events.
    series = [Counts(1000, 8)] * 120
    events = run(series)
    page = [(m, firing) for m, sev, firing in events if sev == "page"]
    assert page and page[0][1] is True and page[0][0] <= 2
    eight_x = Counts(120_000, 960)
    fired = firing_rules(DEFAULT_RULES, {3600: eight_x, 300: eight_x, 6 * 3600: eight_x, 1800: eight_x,
                                         3 * 86400: eight_x}, OBJECTIVE)
    assert {r.factor for r in fired} == {6.0, 1.0}


def test_too_few_events_never_fire():
    assert firing_rules(DEFAULT_RULES, {3600: Counts(3, 3), 300: Counts(3, 3)}, OBJECTIVE, min_events=10) == []
    assert firing_rules(DEFAULT_RULES, {3600: Counts(30, 3), 300: Counts(3, 3)}, OBJECTIVE, min_events=10)


def test_the_tracker_reports_each_change_once():
    tracker = AlertTracker()
    page = [r for r in DEFAULT_RULES if r.severity is Severity.PAGE]
    first = tracker.update("k", Severity.PAGE, page, 10.0)
    assert first is not None and first.firing and first.rule is not None and first.rule.factor == 14.4
    assert tracker.update("k", Severity.PAGE, page, 20.0) is None
    resolved = tracker.update("k", Severity.PAGE, [], 30.0)
    assert resolved is not None and not resolved.firing
    assert tracker.update("k", Severity.PAGE, [], 40.0) is None


@pytest.mark.parametrize(("avail", "slow", "paging", "maintenance", "state"), [
    (Counts(100, 0), Counts(100, 0), False, False, ComponentState.OPERATIONAL),
    (Counts(5, 5), Counts(0, 0), False, False, ComponentState.OPERATIONAL),  # too few events to judge
    (Counts(100, 2), Counts(98, 0), False, False, ComponentState.DEGRADED_PERFORMANCE),
    (Counts(100, 0), Counts(100, 20), False, False, ComponentState.DEGRADED_PERFORMANCE),
    (Counts(100, 20), Counts(80, 0), False, False, ComponentState.PARTIAL_OUTAGE),
    (Counts(100, 0), Counts(100, 0), True, False, ComponentState.PARTIAL_OUTAGE),
    (Counts(100, 80), Counts(20, 0), False, False, ComponentState.MAJOR_OUTAGE),
    (Counts(100, 20), Counts(80, 0), False, True, ComponentState.UNDER_MAINTENANCE),
    (Counts(100, 80), Counts(20, 0), False, True, ComponentState.MAJOR_OUTAGE),
])
def test_component_state(avail, slow, paging, maintenance, state):
    assert component_state(avail, slow, paging=paging, maintenance=maintenance) is state
