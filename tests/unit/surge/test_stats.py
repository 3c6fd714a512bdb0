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


def test_recorders_of_shards_merge_into_one():
    def feed(rec, offset, n):
        for i in range(n):
            t = offset + i * 0.5
            rec.arrival(t, 0)
            rec.offered(t, 0)
            rec.attempt_end(t, 0, "ok" if i % 3 else "shed", None if i % 3 else "overload")
            rec.user_end(t + 0.1, 0, bool(i % 3), 0.1 + i / 100, reason=None if i % 3 else "overload")
            rec.router(t, 1)

    whole = Recorder(["api"], 10.0, bucket_s=1.0)
    feed(whole, 0.0, 10)
    feed(whole, 5.0, 6)
    a, b = Recorder(["api"], 10.0, bucket_s=1.0), Recorder(["api"], 10.0, bucket_s=1.0)
    feed(a, 0.0, 10)
    feed(b, 5.0, 6)
    for t in (0.5, 1.5, 2.5):
        a.gauge("limit.mean", t, 10.0)
        a.gauge("capacity", t, 4.0)
    for t in (0.5, 1.5):
        b.gauge("limit.mean", t, 40.0)
        b.gauge("capacity", t, 2.0)

    def combine(name, values):
        return sum(values) / len(values) if name.endswith(".mean") else sum(values)

    a.merge([b], combine)
    assert a.to_json()["tiers"] == whole.to_json()["tiers"]
    assert a.to_json()["reasons"] == whole.to_json()["reasons"]
    assert a.gateway_requests == whole.gateway_requests and a.end_s == whole.end_s
    assert a.gauges["limit.mean"][:4] == [25.0, 25.0, 25.0, None]  # b's last value carried forward
    assert a.gauges["capacity"][:4] == [6.0, 6.0, 6.0, None]
    with pytest.raises(ValueError, match="only shards of one run merge"):
        a.merge([Recorder(["api"], 10.0, bucket_s=2.0)], combine)
