"""A stated rate budget makes the limit loss-based (limit.on_upstream_budget): latency is the
provider's own load curve, growth is additive in time, drops still cut."""

from __future__ import annotations

import pytest

from seawall.algorithms.limit import Gradient2Limit, VegasLimit


def _windows(limit, t: float, n: int, rtt_s: float, inflight: float, *, budget: bool = False,
             step_s: float = 0.01) -> float:
    for _ in range(n):
        for _ in range(10):
            t += step_s
            if budget:
                limit.on_upstream_budget(t)
            limit.on_sample(t, rtt_s, inflight, False, 100.0, t - 0.005)
    return t


def test_without_a_budget_latency_that_triples_cuts() -> None:
    limit = Gradient2Limit(initial_limit=10_000.0, min_limit=1.0, max_limit=1e6, probe_interval=0)
    t = _windows(limit, 0.0, 5, 0.02, 9_000.0)
    before = limit.limit
    _windows(limit, t, 5, 0.06, 1.1 * before)  # more in flight and three times slower: a queue
    assert limit.limit < 0.9 * before


def test_with_a_stated_budget_latency_does_not_cut_and_growth_is_one_request_a_second() -> None:
    limit = Gradient2Limit(initial_limit=10_000.0, min_limit=1.0, max_limit=1e6, probe_interval=0)
    t = _windows(limit, 0.0, 5, 0.02, 9_000.0, budget=True)
    before = limit.limit
    t2 = _windows(limit, t, 20, 0.06, 1.1 * before, budget=True)
    # 20 windows of 0.1 s: 2 s of growth at one mean request (100 units) a second
    assert limit.limit == pytest.approx(before + 200.0, rel=0.05)
    # two replicas, one ten times busier, grow alike in time (per-window growth would not)
    busy = Gradient2Limit(initial_limit=10_000.0, min_limit=1.0, max_limit=1e6, probe_interval=0)
    quiet = Gradient2Limit(initial_limit=10_000.0, min_limit=1.0, max_limit=1e6, probe_interval=0)
    _windows(busy, 0.0, 100, 0.05, 9_000.0, budget=True, step_s=0.01)
    _windows(quiet, 0.0, 10, 0.05, 9_000.0, budget=True, step_s=0.1)
    assert busy.limit == pytest.approx(quiet.limit, rel=0.02)
    # a drop (the budget ran out: nothing could be sent) still cuts at once
    limit.on_sample(t2 + 1.0, 0.0, limit.limit, True, 100.0, t2 + 0.9)
    assert limit.limit < 0.95 * before


def test_the_budget_speaks_only_while_fresh() -> None:
    limit = Gradient2Limit(initial_limit=10_000.0, min_limit=1.0, max_limit=1e6, probe_interval=0)
    limit.on_upstream_budget(0.0)
    t = _windows(limit, 10.0, 5, 0.02, 9_000.0)  # ten seconds later: latency decides again
    before = limit.limit
    _windows(limit, t, 5, 0.06, 1.1 * before)
    assert limit.limit < 0.9 * before


def test_vegas_takes_the_budget_too() -> None:
    limit = VegasLimit(initial_limit=10_000.0, min_limit=1.0, max_limit=1e6, probe_interval=0)
    t = _windows(limit, 0.0, 3, 0.02, 9_000.0, budget=True)
    before = limit.limit
    _windows(limit, t, 3, 0.06, 0.9 * before, budget=True)
    assert limit.limit > before


def test_after_a_cut_the_limit_climbs_back_additively_only() -> None:
    """No recovery toward each replica's own level before the cut: that memory kept replicas that
    share one budget unequal; AIMD alone evens them out."""
    limit = Gradient2Limit(initial_limit=10_000.0, min_limit=1.0, max_limit=1e6, probe_interval=0)
    t = _windows(limit, 0.0, 3, 0.02, 9_000.0, budget=True)
    limit.on_upstream_budget(t + 0.5)
    limit.on_sample(t + 0.5, 0.0, 9_500.0, True, 100.0, t + 0.4)  # the budget ran out: cut
    cut = limit.limit
    _windows(limit, t + 0.5, 10, 0.02, cut, budget=True)  # one second of calm windows
    assert limit.limit == pytest.approx(cut + 100.0, rel=0.05)  # one mean request, not a quarter of the way back
