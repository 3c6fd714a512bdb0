import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from seawall.algorithms.retry_budget import RetryBudget


def test_floor_allows_retries_without_traffic():
    b = RetryBudget(ratio=0.2, min_per_s=1, window_s=10)
    granted = sum(b.try_retry(0.0) for _ in range(20))
    assert granted == 10  # 1/s * 10 s
    assert b.denied_total == 10


def test_each_request_deposits_ratio_of_a_retry():
    b = RetryBudget(ratio=0.2, min_per_s=0, window_s=10)
    assert not b.try_retry(0.0)
    for _ in range(100):
        b.on_request(0.0)
    assert b.available(0.0) == pytest.approx(20)
    assert sum(b.try_retry(0.5) for _ in range(30)) == 20
    assert b.attempts_total == 120 and b.requests_total == 100 and b.retries_total == 20
    assert b.amplification(0.5) == pytest.approx(1.2)


def test_deposits_expire_with_the_window():
    b = RetryBudget(ratio=0.5, min_per_s=0, window_s=10)
    for _ in range(10):
        b.on_request(0.0)
    assert b.available(9.9) == pytest.approx(5)
    assert b.available(10.0) == 0.0
    assert not b.try_retry(10.0)


def test_client_retries_get_nothing_when_tight():
    b = RetryBudget(ratio=0.2, min_per_s=0, window_s=10, tight_fraction=0.5)
    for _ in range(50):
        b.on_request(0.0)  # allowance: 10 retries
    assert not b.is_tight(0.0)
    assert all(b.try_retry(0.0, client_retry_count=1) for _ in range(5))
    assert not b.is_tight(0.0)  # exactly half left
    assert b.try_retry(0.0)  # a first-time request may still retry
    assert b.is_tight(0.0)
    assert not b.try_retry(0.0, client_retry_count=2)
    assert b.try_retry(0.0, client_retry_count=0)


def test_amplification_without_requests():
    b = RetryBudget(min_per_s=1)
    assert b.amplification(0.0) == 1.0
    b.try_retry(0.0)
    assert b.amplification(0.0) == 2.0


def test_invalid_configuration_rejected():
    with pytest.raises(ValueError):
        RetryBudget(ratio=-0.1)
    with pytest.raises(ValueError):
        RetryBudget(window_s=0)


@settings(max_examples=200)
@given(
    st.floats(0, 1),
    st.floats(0, 5),
    st.lists(st.tuples(st.floats(0, 0.7), st.booleans(), st.integers(0, 2)), max_size=300),
)
def test_retries_in_any_window_bounded_by_ratio_and_floor(ratio, min_per_s, events):
    """Independent oracle: grant iff the window ending now stays within ratio*requests + floor."""
    window_s, bucket_s = 4.0, 0.5
    n = 8
    b = RetryBudget(ratio=ratio, min_per_s=min_per_s, window_s=window_s, bucket_s=bucket_s,
                    tight_fraction=0.5)
    now = 0.0
    requests: list[int] = []
    retries: list[int] = []
    for gap, is_request, client_retry_count in events:
        now += gap
        epoch = math.floor(now / bucket_s)
        if is_request:
            b.on_request(now)
            requests.append(epoch)
            continue
        in_window_req = sum(e > epoch - n for e in requests)
        in_window_ret = sum(e > epoch - n for e in retries)
        allowance = ratio * in_window_req + min_per_s * window_s
        granted = b.try_retry(now, client_retry_count)
        if granted:
            retries.append(epoch)
            assert in_window_ret + 1 <= allowance + 1e-6
        elif client_retry_count == 0:
            assert in_window_ret + 1 > allowance - 1e-6  # refused only when the budget is spent
