import pytest
from hypothesis import given
from hypothesis import strategies as st

from seawall.algorithms.ejection import EjectionGuard, Member


def test_nothing_open_nothing_ejected():
    e = EjectionGuard().decide([Member("a", False), Member("b", False)])
    assert e.ejected == frozenset() and e.kept_open == ()


def test_at_most_the_fraction_is_ejected_worst_first():
    members = [Member("a", True, 0.9), Member("b", True, 0.2), Member("c", True, 0.5), Member("d", False)]
    e = EjectionGuard(max_ejected_fraction=0.5).decide(members)
    assert e.ejected == {"a", "c"}
    assert e.kept_open == ("b",)


def test_lone_open_deployment_is_ejected_to_fail_fast():
    assert EjectionGuard().decide([Member("a", True)]).ejected == {"a"}
    assert EjectionGuard(min_ejected=0).decide([Member("a", True)]).kept_open == ("a",)


def test_ties_keep_the_earlier_member():
    members = [Member("a", True, 1.0), Member("b", True, 1.0), Member("c", False)]
    e = EjectionGuard(max_ejected_fraction=0.34).decide(members)
    assert e.ejected == {"b"} and e.kept_open == ("a",)


def test_kept_are_least_bad_first():
    members = [Member(str(i), True, float(b)) for i, b in enumerate([5, 1, 3, 4, 2, 9])]
    e = EjectionGuard(max_ejected_fraction=0.0, min_ejected=0).decide(members)
    assert e.kept_open == ("1", "4", "2", "3", "0", "5")


def test_invalid_fraction_rejected():
    with pytest.raises(ValueError):
        EjectionGuard(1.5)


@given(
    st.lists(st.tuples(st.booleans(), st.floats(0, 10)), min_size=1, max_size=30),
    st.floats(0, 1),
)
def test_never_ejects_more_than_allowed_and_partitions_the_open(flags, fraction):
    members = [Member(f"d{i}", is_open, bad) for i, (is_open, bad) in enumerate(flags)]
    guard = EjectionGuard(fraction)
    e = guard.decide(members)
    open_names = {m.name for m in members if m.breaker_open}
    assert len(e.ejected) <= max(1, int(fraction * len(members) + 1e-9))
    assert e.ejected | set(e.kept_open) == open_names
    assert not e.ejected & set(e.kept_open)
    badness = {m.name: m.badness for m in members}
    if e.ejected and e.kept_open:
        assert max(badness[n] for n in e.kept_open) <= min(badness[n] for n in e.ejected)
