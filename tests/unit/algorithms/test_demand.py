"""PeakDemand: the recent peak of work per criticality, remembered one to two windows."""

import pytest

from seawall.algorithms.demand import PeakDemand
from seawall.core.types import Criticality as C


def test_a_peak_is_remembered_for_one_to_two_windows():
    d = PeakDemand(window_s=10.0)
    d.observe(C.CRITICAL, 500.0, 0.0)
    d.observe(C.CRITICAL, 200.0, 5.0)
    assert d.peak(C.CRITICAL, 9.9) == 500.0
    assert d.peak(C.CRITICAL, 15.0) == 500.0  # the previous window's peak still counts
    d.observe(C.CRITICAL, 100.0, 16.0)
    assert d.peak(C.CRITICAL, 26.0) == 100.0  # two windows on, only the last one
    assert d.peak(C.SHEDDABLE, 26.0) == 0.0  # per criticality


def test_a_silent_window_forgets():
    d = PeakDemand(window_s=10.0)
    d.observe(C.CRITICAL_PLUS, 300.0, 0.0)
    assert d.peak(C.CRITICAL_PLUS, 25.0) == 0.0


def test_window_zero_disables_and_negative_is_refused():
    d = PeakDemand(window_s=0.0)
    d.observe(C.CRITICAL, 300.0, 0.0)
    assert d.peak(C.CRITICAL, 0.0) == 0.0
    with pytest.raises(ValueError):
        PeakDemand(window_s=-1.0)
