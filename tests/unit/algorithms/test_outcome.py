import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from seawall.algorithms.outcome import ERROR_KINDS, Outcome, classify
from seawall.algorithms.window import SlidingCounts


@pytest.mark.parametrize(
    ("status", "error_kind", "expected"),
    [
        (200, None, Outcome.SUCCESS),
        (204, None, Outcome.SUCCESS),
        (500, None, Outcome.FAILURE),
        (502, None, Outcome.FAILURE),
        (503, None, Outcome.FAILURE),
        (429, None, Outcome.OVERLOADED),
        (529, None, Outcome.OVERLOADED),
        (400, None, Outcome.CLIENT_ERROR),
        (404, None, Outcome.CLIENT_ERROR),
        (413, None, Outcome.CLIENT_ERROR),
        (422, None, Outcome.CLIENT_ERROR),
        (401, None, Outcome.FAILURE),  # the deployment's credentials, not the client's
        (403, None, Outcome.FAILURE),
        (408, None, Outcome.FAILURE),
        (499, None, Outcome.CANCELLED),
        (302, None, Outcome.FAILURE),
        (None, "connect", Outcome.FAILURE),
        (None, "timeout", Outcome.FAILURE),
        (200, "read", Outcome.FAILURE),  # stream broke after a 200 head
        (200, "cancelled", Outcome.CANCELLED),
        (None, "cancelled", Outcome.CANCELLED),
        (None, "deadline", Outcome.CANCELLED),  # the client's budget ran out, not the deployment
        (None, None, Outcome.FAILURE),
    ],
)
def test_classify_rules(status, error_kind, expected):
    assert classify(status, error_kind) is expected


def test_only_failures_and_overload_are_retryable():
    assert {o for o in Outcome if o.retryable} == {Outcome.FAILURE, Outcome.OVERLOADED}


@given(st.integers(100, 599), st.sampled_from(sorted(ERROR_KINDS - {"cancelled", "deadline"})))
def test_any_error_kind_other_than_cancelled_is_a_failure(status, kind):
    assert classify(status, kind) is Outcome.FAILURE


@given(st.integers(100, 599))
def test_rate_limits_never_classified_as_failure(status):
    if status in (429, 529):
        assert classify(status, None) is Outcome.OVERLOADED
    else:
        assert classify(status, None) is not Outcome.OVERLOADED


def test_sliding_counts_expire_whole_buckets():
    w = SlidingCounts(window_s=3, bucket_s=1, channels=2)
    w.add(0.5, 0)
    w.add(1.5, 0, 2)
    w.add(2.5, 1)
    assert w.total(2.9, 0) == 3 and w.total(2.9, 1) == 1
    assert w.total(3.0, 0) == 2  # bucket [0, 1) expired
    assert w.total(4.0, 0) == 0 and w.total(4.0, 1) == 1
    assert w.total(100.0, 1) == 0
    w.add(50.0, 0)  # time going backwards lands in the newest bucket
    assert w.total(100.0, 0) == 1


@given(st.lists(st.tuples(st.floats(0, 3), st.integers(0, 1), st.integers(1, 5)), max_size=100))
def test_sliding_counts_match_brute_force(events):
    w = SlidingCounts(window_s=5, bucket_s=0.5, channels=2)
    now = 0.0
    seen = []
    for gap, ch, n in events:
        now += gap
        w.add(now, ch, n)
        epoch = math.floor(now / 0.5)
        seen.append((epoch, ch, n))
        for c in (0, 1):
            expected = sum(k for e, cc, k in seen if cc == c and e > epoch - 10)
            assert w.total(now, c) == expected
