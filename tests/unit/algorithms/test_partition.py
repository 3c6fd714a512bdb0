from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from seawall.algorithms.partition import PartitionedLimiter
from seawall.core.types import Criticality

SP, S, C, CP = (Criticality.SHEDDABLE_PLUS, Criticality.SHEDDABLE, Criticality.CRITICAL,
                Criticality.CRITICAL_PLUS)
SHARES = {CP: 0.4, C: 0.3, SP: 0.1, S: 0.1}
EPS = 1e-6


def test_idle_shares_are_borrowed_and_reclaimed_by_priority() -> None:
    lim = PartitionedLimiter(SHARES)
    assert all(lim.try_acquire(S, 10, 100) for _ in range(10))  # sheddable borrows everything idle
    assert not lim.try_acquire(S, 10, 100)
    assert lim.borrowed(S, 100) == pytest.approx(90)
    # Sheddable-plus reclaims what sheddable borrowed: only sheddable's reserve counts against it.
    assert lim.try_acquire(SP, 50, 100)
    # Critical sees both loans as free: 10 + 10 of lower reserves in use leave it 80.
    assert lim.try_acquire(C, 80, 100)
    assert not lim.try_acquire(C, 1, 100)
    # Under overload the lowest are shed first; each keeps only its reserve.
    assert not lim.try_acquire(S, 1, 100)
    assert not lim.try_acquire(SP, 1, 100)
    assert lim.try_acquire(CP, 1, 100)
    # The overshoot is exactly the loans, which drain as those requests finish.
    assert lim.inflight == pytest.approx(100 + 90 + 40 + 1)
    for _ in range(10):
        lim.release(S, 10)
    lim.release(SP, 50)
    assert lim.try_acquire(S, 10, 100)  # its reserve, with 81 held above it
    assert not lim.try_acquire(S, 10, 100)  # 101 > 100: nothing left to borrow
    assert lim.try_acquire(S, 9, 100)  # exactly the idle remainder


def test_critical_is_admitted_while_a_lower_tier_holds_more_than_its_share() -> None:
    lim = PartitionedLimiter(SHARES)
    assert lim.try_acquire(S, 100, 100)
    for crit in (SP, C, CP):
        assert lim.try_acquire(crit, 5, 100), crit


def test_own_reserve_survives_higher_tiers_borrowing_it() -> None:
    lim = PartitionedLimiter(SHARES)
    assert lim.try_acquire(CP, 100, 100)
    assert not lim.try_acquire(C, 31, 100)
    assert lim.try_acquire(C, 30, 100)
    assert lim.try_acquire(S, 10, 100)
    assert not lim.try_acquire(S, 1, 100)


def test_request_larger_than_the_limit_admitted_when_idle() -> None:
    lim = PartitionedLimiter(SHARES)
    assert lim.try_acquire(S, 500, 100)
    assert not lim.try_acquire(S, 1, 100)
    lim.release(S, 500)
    assert lim.inflight == 0


def test_oversized_critical_request_does_not_wait_for_lower_tiers_to_drain() -> None:
    lim = PartitionedLimiter(SHARES)
    assert lim.try_acquire(S, 60, 100)  # 50 beyond its reserved 10
    # Critical can hold at most 100 - 10 - 10 = 80 while the lower tiers sit at their reserves, so a
    # 500-unit prompt is charged as 80: 10 (sheddable's reserve in use) + 80 <= 100.
    assert lim.need(C, 500, 100) == pytest.approx(80)
    assert lim.try_acquire(C, 500, 100)
    assert not lim.try_acquire(C, 1, 100)


def test_release_more_than_held_is_an_error() -> None:
    lim = PartitionedLimiter(SHARES)
    assert lim.try_acquire(C, 5, 100)
    with pytest.raises(ValueError):
        lim.release(C, 6)
    lim.release(C, 5)
    assert lim.usage(C) == 0


@pytest.mark.parametrize("shares", [{C: 1.2}, {C: -0.1}, {C: 0.6, S: 0.5}])
def test_invalid_shares_rejected(shares: dict[Criticality, float]) -> None:
    with pytest.raises(ValueError):
        PartitionedLimiter(shares)


# --- properties -----------------------------------------------------------------------------------

share_values = st.lists(st.floats(0, 1), min_size=4, max_size=4).map(
    lambda xs: [x / max(1.0, sum(xs)) for x in xs]
)
ops = st.lists(
    st.tuples(
        st.booleans(),  # acquire (True) or release the oldest holding of that criticality
        st.sampled_from(list(Criticality)),
        st.floats(0, 60),  # units
        st.floats(1, 200),  # limit at this moment: it moves
    ),
    max_size=150,
)


def excess(lim: PartitionedLimiter, crit: Criticality, limit: float) -> float:
    return max(0.0, lim.usage(crit) - lim.reserved(crit, limit))


@settings(max_examples=300, deadline=None)
@given(share_values, ops)
def test_admission_invariants(
    shares: list[float], operations: list[tuple[bool, Criticality, float, float]]
) -> None:
    lim = PartitionedLimiter(dict(zip(Criticality, shares, strict=True)))
    held: dict[Criticality, list[float]] = {c: [] for c in Criticality}
    for acquire, crit, units, limit in operations:
        if not acquire:
            if held[crit]:
                lim.release(crit, held[crit].pop(0))
            continue
        lower = [c for c in Criticality if c < crit]
        total_before = lim.inflight
        excess_before = sum(excess(lim, c, limit) for c in Criticality)
        ceiling = limit * (1 - sum(lim.share(c) for c in lower))
        need = min(units, ceiling) if ceiling > 1e-9 else units
        # Capacity counted against this request if every lower tier gave back its borrowing.
        held_against = sum(lim.usage(c) for c in Criticality if c >= crit) + sum(
            min(lim.usage(c), lim.reserved(c, limit)) for c in lower
        )
        # Shedding is ordered by criticality: a fit for a lower tier is a fit for this one.
        fits_below = [
            c for c in lower
            if lim.would_admit(c, units, limit)
            and total_before > 0
            and lim.usage(c) + units > lim.reserved(c, limit) + EPS
        ]
        admitted = lim.try_acquire(crit, units, limit)
        if fits_below and ceiling > 1e-9:
            assert admitted
        if not admitted:
            # The issue's invariant: lower tiers' borrowing never counts against a higher tier. A
            # rejected request would not fit even if every lower tier were cut back to its share.
            assert total_before > 0
            assert lim.usage(crit) + units > lim.reserved(crit, limit) - EPS
            assert held_against + need > limit - EPS
            continue
        held[crit].append(units)
        if total_before > 0:
            # Overshoot bound: only by what borrowers hold beyond their shares (and the part of one
            # oversized request that could never fit).
            assert lim.inflight <= limit + excess_before + max(0.0, units - need) + EPS
            assert lim.usage(crit) <= limit + max(0.0, units - need) + EPS
    assert lim.inflight == pytest.approx(sum(sum(v) for v in held.values()), abs=EPS)


@settings(max_examples=200, deadline=None)
@given(
    share_values,
    st.lists(st.tuples(st.sampled_from(list(Criticality)), st.floats(0.5, 20)), max_size=100),
)
def test_a_tier_always_gets_its_ceiling_whatever_lower_tiers_borrowed(
    shares: list[float], arrivals: list[tuple[Criticality, float]]
) -> None:
    """Fill the limiter in arbitrary order: a tier is only ever refused once its own usage, the
    tiers above it and the reserves (not the borrowing) of the tiers below fill the limit."""
    limit = 100.0
    lim = PartitionedLimiter(dict(zip(Criticality, shares, strict=True)))
    for crit, units in arrivals:
        above = sum(lim.usage(c) for c in Criticality if c >= crit)
        lower_reserves = sum(lim.reserved(c, limit) for c in Criticality if c < crit)
        guaranteed = above + lower_reserves + units <= limit
        admitted = lim.try_acquire(crit, units, limit)
        if guaranteed:
            assert admitted
