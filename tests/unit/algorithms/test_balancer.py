import random
from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from seawall.algorithms.balancer import (
    Candidate,
    PeakEwma,
    eligible,
    failover_order,
    least_inflight,
    peak_ewma_p2c,
    weighted,
)

unit = st.floats(0, 1, exclude_max=True)


def names(cands):
    return [c.name for c in cands]


def test_empty_group_gives_none():
    assert weighted([], 0.5) is None
    assert least_inflight([], 0.5) is None
    assert peak_ewma_p2c([], 0.1, 0.2, 0.0) is None
    assert failover_order([], None) == []


def test_lower_priority_tier_used_while_it_has_a_healthy_member():
    cands = [Candidate("primary-a", priority=0, healthy=False), Candidate("primary-b", priority=0),
             Candidate("fallback", priority=1)]
    assert names(eligible(cands)) == ["primary-b"]
    cands[1] = Candidate("primary-b", priority=0, healthy=False)
    assert names(eligible(cands)) == ["fallback"]


def test_all_unhealthy_falls_back_to_the_preferred_tier():
    cands = [Candidate("a", priority=1, healthy=False), Candidate("b", priority=0, healthy=False)]
    assert names(eligible(cands)) == ["b"]


def test_low_headroom_deprioritised_within_tier_only():
    cands = [Candidate("a", headroom=0.05), Candidate("b", headroom=0.5), Candidate("c", priority=1)]
    assert names(eligible(cands)) == ["b"]
    cands = [Candidate("a", headroom=0.05), Candidate("b", headroom=0.01), Candidate("c", priority=1)]
    assert names(eligible(cands)) == ["a", "b"]  # all low: stay in the tier, do not spill over


def test_weighted_frequencies_match_weights():
    cands = [Candidate("a", weight=1), Candidate("b", weight=3), Candidate("c", weight=6),
             Candidate("z", weight=0)]
    rng = random.Random(42)
    draws = 40_000
    counts = Counter(weighted(cands, rng.random()).name for _ in range(draws))
    assert counts["z"] == 0
    for name, share in (("a", 0.1), ("b", 0.3), ("c", 0.6)):
        assert counts[name] / draws == pytest.approx(share, abs=0.01)


def test_weighted_all_zero_is_uniform_and_edge_samples_stay_in_range():
    cands = [Candidate("a", weight=0), Candidate("b", weight=0)]
    assert weighted(cands, 0.0).name == "a"
    assert weighted(cands, 0.999999).name == "b"
    assert weighted([Candidate("a"), Candidate("b")], 1.0).name == "b"


def test_least_inflight_breaks_ties_with_u():
    cands = [Candidate("a", inflight_units=3), Candidate("b", inflight_units=1),
             Candidate("c", inflight_units=1)]
    assert least_inflight(cands, 0.1).name == "b"
    assert least_inflight(cands, 0.9).name == "c"
    weighted_cands = [Candidate("a", weight=4, inflight_units=3), Candidate("b", inflight_units=1)]
    assert least_inflight(weighted_cands, 0.5).name == "a"


def test_peak_ewma_jumps_up_and_decays_down():
    e = PeakEwma(decay_s=10, initial_rtt_s=1.0)
    assert e.cost(0.0, 0) == 1.0
    e.observe(0.0, 0.2)  # first sample replaces the prior
    assert e.rtt_s(0.0) == pytest.approx(0.2)
    e.observe(1.0, 2.0)  # a slower sample takes over at once
    assert e.rtt_s(1.0) == pytest.approx(2.0)
    e.observe(11.0, 0.2)  # a faster one only decays in: w = e^-1
    assert e.rtt_s(11.0) == pytest.approx(2.0 * 0.36788 + 0.2 * 0.63212, rel=1e-4)
    assert e.rtt_s(21.0) == pytest.approx(e.estimate_s * 0.36788, rel=1e-4)  # idle: decays toward 0
    assert e.cost(11.0, 3) == pytest.approx(4 * e.rtt_s(11.0))


def test_p2c_picks_the_cheaper_of_the_two_sampled():
    slow, fast, idle = PeakEwma(), PeakEwma(), PeakEwma()
    slow.observe(0.0, 5.0)
    fast.observe(0.0, 0.5)
    idle.observe(0.0, 0.5)
    cands = [Candidate("slow", ewma=slow), Candidate("fast", ewma=fast, inflight_units=1),
             Candidate("idle", ewma=idle)]
    assert peak_ewma_p2c(cands, 0.0, 0.0, 0.0).name == "fast"  # slow vs fast
    assert peak_ewma_p2c(cands, 0.5, 0.9, 0.0).name == "idle"  # fast vs idle
    assert peak_ewma_p2c([cands[0]], 0.3, 0.7, 0.0).name == "slow"


def test_p2c_spreads_load_over_equals():
    cands = [Candidate(n) for n in "abcd"]
    rng = random.Random(1)
    counts = Counter(peak_ewma_p2c(cands, rng.random(), rng.random(), 0.0).name
                     for _ in range(8000))
    assert all(c / 8000 == pytest.approx(0.25, abs=0.03) for c in counts.values())


cand_st = st.builds(
    Candidate,
    name=st.text("abcdefgh", min_size=1, max_size=3),
    weight=st.floats(0, 10),
    priority=st.integers(0, 2),
    inflight_units=st.floats(0, 100),
    healthy=st.booleans(),
    headroom=st.floats(0, 1),
)


@given(st.lists(cand_st, min_size=1, max_size=12), unit, unit)
def test_p2c_never_picks_unhealthy_when_a_healthy_exists(cands, u1, u2):
    chosen = peak_ewma_p2c(cands, u1, u2, 0.0)
    assert chosen is not None and chosen in cands
    if any(c.healthy for c in cands):
        assert chosen.healthy
    usable = [c for c in cands if c.healthy] or cands
    assert chosen.priority == min(c.priority for c in usable)


@given(st.lists(cand_st, min_size=1, max_size=12), unit)
def test_every_strategy_respects_health(cands, u):
    for chosen in (weighted(cands, u), least_inflight(cands, u)):
        assert chosen is not None
        if any(c.healthy for c in cands):
            assert chosen.healthy


@given(st.lists(cand_st, min_size=1, max_size=12, unique_by=lambda c: c.name), unit)
def test_failover_order_covers_the_rest_healthy_first(cands, u):
    first = weighted(cands, u)
    order = failover_order(cands, first)
    assert first is not None and first not in order
    assert sorted(names(order)) == sorted(c.name for c in cands if c.name != first.name)
    healthy_flags = [c.healthy for c in order]
    assert healthy_flags == sorted(healthy_flags, reverse=True)
