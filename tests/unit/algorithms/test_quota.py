import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from seawall.algorithms.quota import (
    DAY_S,
    Dimension,
    LocalQuota,
    QuotaLimits,
    QuotaScope,
    format_reset,
    rate_state,
)

T0 = 1_700_000_000.0  # wall and monotonic alike in these tests


def key(**limits: int) -> QuotaScope:
    return QuotaScope("key", "k1", "acme", QuotaLimits(**limits))


def tenant(**limits: int) -> QuotaScope:
    return QuotaScope("tenant", "acme", "acme", QuotaLimits(**limits))


def test_requests_per_min_bursts_a_minute_then_refills_continuously():
    q, scopes = LocalQuota(), (key(requests_per_min=60),)
    assert all(q.acquire(scopes, 0, T0, T0).allowed for _ in range(60))
    d = q.acquire(scopes, 0, T0, T0)
    assert not d.allowed and d.refused is Dimension.REQUESTS
    assert d.retry_after_s == pytest.approx(1.0) and d.requests is not None and d.requests.remaining == 0
    assert q.acquire(scopes, 0, T0 + 1.0, T0 + 1.0).allowed
    assert not q.acquire(scopes, 0, T0 + 1.0, T0 + 1.0).allowed


def test_all_or_nothing_across_scopes():
    q = LocalQuota()
    scopes = (key(requests_per_min=100), tenant(requests_per_min=2))
    assert q.acquire(scopes, 0, T0, T0).allowed and q.acquire(scopes, 0, T0, T0).allowed
    d = q.acquire(scopes, 0, T0, T0)
    assert not d.allowed and d.scope is not None and d.scope.kind == "tenant" and d.limit == 2
    # the key was not charged by the refused request: 98 left, reported as the tighter of the two
    ok = q.acquire((key(requests_per_min=100),), 0, T0, T0)
    assert ok.requests is not None and ok.requests.remaining == 97


def test_tokens_estimate_then_reconcile_gives_back_and_charges_debt():
    q, scopes = LocalQuota(), (key(tokens_per_min=1000),)
    d = q.acquire(scopes, 600, T0, T0)
    assert d.allowed and d.tokens is not None and d.tokens.remaining == 400
    assert not q.acquire(scopes, 600, T0, T0).allowed
    q.settle(scopes, -300, T0, T0, T0)  # used 300, not 600
    assert q.acquire(scopes, 600, T0, T0).allowed  # 700 were free
    q.settle(scopes, +500, T0, T0, T0)  # a request used 500 more than estimated: a debt
    d = q.acquire(scopes, 1, T0, T0)
    assert not d.allowed and d.refused is Dimension.TOKENS
    assert d.retry_after_s == pytest.approx((300 + 600 + 500 + 1 - 1000) * 60 / 1000)


def test_request_larger_than_the_bucket_never_fits():
    d = LocalQuota().acquire((key(tokens_per_min=100),), 101, T0, T0)
    assert not d.allowed and math.isinf(d.retry_after_s)


def test_concurrency_released_on_settle():
    q, scopes = LocalQuota(), (key(concurrent_requests=2),)
    assert q.acquire(scopes, 0, T0, T0).allowed and q.acquire(scopes, 0, T0, T0).allowed
    d = q.acquire(scopes, 0, T0, T0)
    assert not d.allowed and d.refused is Dimension.CONCURRENCY and d.retry_after_s > 0
    q.settle(scopes, 0, T0, T0, T0)
    assert q.inflight(scopes[0]) == 1
    assert q.acquire(scopes, 0, T0, T0).allowed


def test_daily_budget_renews_at_utc_midnight():
    q, scopes = LocalQuota(), (key(tokens_per_day=1000),)
    day_start = (T0 // DAY_S) * DAY_S
    t = day_start + DAY_S - 100.0  # 100 s before midnight
    assert q.acquire(scopes, 900, t, t).allowed
    d = q.acquire(scopes, 200, t, t)
    assert not d.allowed and d.refused is Dimension.DAILY_TOKENS and d.retry_after_s == pytest.approx(100.0)
    q.settle(scopes, -500, t, t, t)  # reconciled: 400 used
    assert q.acquire(scopes, 200, t, t).allowed
    assert q.acquire(scopes, 1000, t + 101, t + 101).allowed  # a new day
    # a reconciliation for yesterday's request does not touch today's counter
    q.settle(scopes, -900, t + 102, t + 102, t)
    assert not q.acquire(scopes, 1, t + 102, t + 102).allowed


def test_share_is_one_nth_at_least_one():
    lim = QuotaLimits(requests_per_min=100, tokens_per_min=10, concurrent_requests=1, tokens_per_day=None)
    assert lim.share(1) is lim
    assert lim.share(3) == QuotaLimits(33, 3, 1, None)


def test_rate_state_and_format_reset():
    assert rate_state(T0, T0, 60) == rate_state(T0 - 5, T0, 60)  # a full bucket
    s = rate_state(T0 + 30.0, T0, 60)
    assert (s.limit, s.remaining, s.reset_s) == (60, 30, 30.0)
    assert [format_reset(x) for x in (0.02, 1.5, 360.0, 3725.0)] == ["20ms", "1.5s", "6m0s", "1h2m5s"]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 2.0), st.integers(0, 3)), min_size=1, max_size=200))
def test_never_admits_more_than_burst_plus_refill(steps):
    """Over any run, admitted requests <= limit + rate x elapsed (the GCRA bound)."""
    limit = 20
    q, scopes = LocalQuota(), (key(requests_per_min=limit),)
    t, admitted = T0, 0
    for dt, n in steps:
        t += dt
        admitted += sum(q.acquire(scopes, 0, t, t).allowed for _ in range(n))
    assert admitted <= limit + (t - T0) * limit / 60 + 1e-6
