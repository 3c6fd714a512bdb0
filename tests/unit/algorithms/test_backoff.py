import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from seawall.algorithms.backoff import decorrelated_jitter, exponential_ceiling_s, full_jitter

unit = st.floats(0, 1, exclude_max=True)


def test_full_jitter_scales_the_exponential_ceiling():
    assert full_jitter(0, 0.1, 10, 0.5) == pytest.approx(0.05)
    assert full_jitter(3, 0.1, 10, 0.5) == pytest.approx(0.4)
    assert full_jitter(10, 0.1, 10, 0.5) == pytest.approx(5.0)  # capped
    assert full_jitter(5, 0.1, 10, 0.0) == 0.0


def test_huge_attempt_numbers_do_not_overflow():
    assert exponential_ceiling_s(5000, 0.1, 30) == 30
    assert full_jitter(10**9, 0.1, 30, 0.99) == pytest.approx(29.7)


def test_negative_inputs_rejected():
    with pytest.raises(ValueError):
        full_jitter(-1, 0.1, 1, 0.5)


@given(st.integers(0, 2000), st.floats(0, 10), st.floats(0, 100), unit)
def test_full_jitter_within_zero_and_ceiling(attempt, base_s, cap_s, u):
    delay = full_jitter(attempt, base_s, cap_s, u)
    assert 0.0 <= delay <= min(cap_s, base_s * 2.0 ** min(attempt, 1000))


def test_full_jitter_is_spread_uniformly():
    rng = random.Random(7)
    delays = [full_jitter(4, 0.1, 60, rng.random()) for _ in range(20_000)]
    ceiling = 1.6
    assert sum(delays) / len(delays) == pytest.approx(ceiling / 2, rel=0.03)
    assert sum(d < ceiling / 4 for d in delays) / len(delays) == pytest.approx(0.25, abs=0.02)


@given(st.floats(0.01, 1), st.floats(1, 60), st.lists(unit, min_size=1, max_size=30))
def test_decorrelated_jitter_stays_in_bounds(base_s, cap_s, us):
    previous = base_s
    for u in us:
        previous = decorrelated_jitter(previous, base_s, cap_s, u)
        assert min(base_s, cap_s) <= previous <= cap_s


def test_decorrelated_jitter_grows_on_average():
    rng = random.Random(3)
    finals = []
    for _ in range(2000):
        previous = 0.1
        for _ in range(8):
            previous = decorrelated_jitter(previous, 0.1, 1000, rng.random())
        finals.append(previous)
    assert sum(finals) / len(finals) > 1.0  # about 0.1 * 1.5**8 = 2.6
