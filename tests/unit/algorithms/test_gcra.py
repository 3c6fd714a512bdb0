import pytest
from hypothesis import given
from hypothesis import strategies as st

from seawall.algorithms.gcra import Gcra, KeyedGcra


def test_burst_then_steady_rate():
    g = Gcra(rate_per_s=10, burst=5)
    now = 100.0
    assert all(g.take(now) == 0.0 for _ in range(5))
    wait = g.take(now)
    assert wait == pytest.approx(0.1)
    assert g.take(now + 0.1) == 0.0
    assert g.take(now + 0.1) > 0


def test_would_wait_does_not_consume():
    g = Gcra(rate_per_s=1, burst=1)
    assert g.would_wait(0.0) == 0.0
    assert g.would_wait(0.0) == 0.0
    assert g.take(0.0) == 0.0
    assert g.would_wait(0.0) == pytest.approx(1.0)


def test_keyed_isolated_and_bounded():
    k = KeyedGcra(rate_per_s=1, burst=2, max_keys=3)
    assert k.take("a", 0) == 0 and k.take("a", 0) == 0
    assert k.take("a", 0) > 0
    assert k.take("b", 0) == 0
    for name in "cde":
        k.take(name, 0)
    assert len(k) == 3
    assert k.would_wait("a", 0) == 0.0  # evicted: forgetting only makes it lenient


def test_invalid_parameters_rejected():
    with pytest.raises(ValueError):
        Gcra(0, 1)
    with pytest.raises(ValueError):
        KeyedGcra(1, 0)


@given(st.floats(0.5, 100), st.integers(1, 20), st.lists(st.floats(0, 0.5), min_size=1, max_size=200))
def test_never_admits_more_than_burst_plus_rate_times_elapsed(rate, burst, gaps):
    g = Gcra(rate, burst)
    now = 0.0
    admitted = 0
    for gap in gaps:
        now += gap
        if g.take(now) == 0.0:
            admitted += 1
    assert admitted <= burst + rate * now + 1e-6
