import random

import pytest

from seawall.surge.stats import LogHistogram, Recorder


def test_histogram_quantiles_are_within_about_one_percent():
    rng = random.Random(5)
    values = [rng.lognormvariate(0, 1.2) for _ in range(50_000)]
    h = LogHistogram()
    for v in values:
        h.add(v)
    values.sort()
    for q in (0.5, 0.9, 0.99, 0.999):
        exact = values[int(q * len(values)) - 1]
        assert h.quantile(q) == pytest.approx(exact, rel=0.015)
    assert h.n == len(values) and h.max == values[-1]


def test_histogram_memory_is_bounded_and_merges():
    a, b = LogHistogram(), LogHistogram()
    for i in range(1, 100_001):
        (a if i % 2 else b).add(i / 1000)
    size = len(a.counts)
    a.merge(b)
    assert len(a.counts) == size < 1000
    assert a.n == 100_000
    assert a.quantile(0.5) == pytest.approx(50, rel=0.015)
    assert LogHistogram.from_json(a.to_json()).quantile(0.9) == a.quantile(0.9)


def test_recorder_counts_and_recovery():
    rec = Recorder(["api"], 100.0, bucket_s=1.0)
    for t in range(100):
        rec.offered(t + 0.5, 0)
        ok = t < 40 or t >= 70  # a disturbance from 40 s to 70 s
        rec.attempt_end(t + 0.5, 0, "ok" if ok else "shed", None if ok else "overload")
    assert rec.recovery_s(0, 50.0, 0.99) == pytest.approx(20.0)
    assert rec.recovery_s(0, 10.0, 0.99) == 0.0
    data = rec.to_json()
    assert sum(data["tiers"]["api"]["series"]["ok"]) == 70
    assert data["tiers"]["api"]["summary"]["reasons"] == {"overload": 30}
    assert sum(data["reasons"]["overload"]) == 30


def test_recorder_user_outcomes():
    rec = Recorder(["a"], 10.0)
    rec.arrival(0.1, 0)
    rec.arrival(0.2, 0)
    rec.user_end(1.0, 0, True, 0.9, 0.3)
    rec.user_end(2.0, 0, False, 1.8, reason="abandoned")
    s = rec.summary(0)
    assert (s["requests"], s["succeeded"], s["success_rate_pct"]) == (2, 1, 50.0)
    assert s["p99_s"] == pytest.approx(0.9, rel=0.02)
    assert s["user_fail_reasons"] == {"abandoned": 1}
