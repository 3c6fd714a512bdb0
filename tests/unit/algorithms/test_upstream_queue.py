"""A server's own queue report (vLLM's num_requests_waiting) steers the limit (limit.on_upstream_queue)."""

from __future__ import annotations

import pytest

from seawall.algorithms.limit import AimdLimit, Gradient2Limit


def _calm_windows(limit: Gradient2Limit, t: float, n: int, rtt_s: float, inflight: float) -> float:
    for _ in range(n):
        for _ in range(10):
            t += 0.01
            limit.on_sample(t, rtt_s, inflight, False, 1.0, t - 0.005)
    return t


def test_a_reported_queue_cuts_to_the_work_the_server_runs_once_per_round_trip() -> None:
    limit = Gradient2Limit(initial_limit=1000.0, min_limit=1.0, max_limit=10_000.0)
    limit.on_upstream_queue(10.0, 900.0, 300.0, hold_s=2.0)
    assert limit.limit == pytest.approx(600.0)  # 900 in flight, 300 of it waiting upstream
    limit.on_upstream_queue(11.0, 900.0, 300.0, hold_s=2.0)
    assert limit.limit == pytest.approx(600.0)  # the same queue a second later: old news, no second cut
    limit.on_upstream_queue(12.5, 600.0, 100.0, hold_s=2.0)
    assert limit.limit == pytest.approx(500.0)


def test_no_queue_no_cut_and_a_limit_already_below_is_kept() -> None:
    limit = Gradient2Limit(initial_limit=400.0, min_limit=1.0, max_limit=10_000.0)
    limit.on_upstream_queue(1.0, 390.0, 0.0)
    assert limit.limit == 400.0
    limit.on_upstream_queue(5.0, 900.0, 100.0)  # target 800 is above the limit: nothing to cut
    assert limit.limit == 400.0


def test_while_the_server_reports_latency_neither_cuts_nor_grows_only_the_recovery_climbs() -> None:
    limit = Gradient2Limit(initial_limit=1000.0, min_limit=1.0, max_limit=10_000.0)
    t = _calm_windows(limit, 0.0, 5, 0.02, 900.0)  # a baseline of 20 ms
    before = limit.limit
    limit.on_upstream_queue(t, 0.9 * before, 0.0)  # the server: no queue
    t = _calm_windows(limit, t, 5, 0.06, 0.9 * before)  # latency triples: a bigger batch, not a queue
    assert limit.limit == before  # no latency cut while the server speaks for itself
    limit.on_upstream_queue(t + 0.01, before, 0.5 * before, hold_s=0.0)
    cut = limit.limit
    assert cut == pytest.approx(0.5 * before)
    limit.on_upstream_queue(t + 0.02, cut, 0.0)  # the queue drained
    _calm_windows(limit, t + 0.03, 10, 0.02, cut)
    assert cut < limit.limit <= before  # back toward where the queue began, never beyond it


def test_every_windowed_limit_takes_the_report() -> None:
    limit = AimdLimit(initial_limit=100.0, min_limit=1.0, max_limit=1000.0)
    assert limit.on_upstream_queue(1.0, 100.0, 40.0) == pytest.approx(60.0)
