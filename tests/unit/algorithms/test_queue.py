from __future__ import annotations

import itertools
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from seawall.algorithms.queue import AdmissionQueue, CoDel, DrainRate, Waiting
from seawall.core.types import Criticality

S, SP, C, CP = (Criticality.SHEDDABLE, Criticality.SHEDDABLE_PLUS, Criticality.CRITICAL,
                Criticality.CRITICAL_PLUS)


def admit_all(crit: Criticality, units: float) -> bool:
    return True


def drain(q: AdmissionQueue[str], now_s: float = 0.0, *, lifo: bool = False) -> list[str]:
    out = []
    while (w := q.pop_ready(admit_all, now_s, lifo=lifo)) is not None:
        out.append(w.item)
    return out


def test_highest_criticality_first_fifo_within() -> None:
    q: AdmissionQueue[str] = AdmissionQueue()
    for name, crit in [("s1", S), ("c1", C), ("s2", S), ("cp1", CP), ("c2", C), ("sp1", SP)]:
        assert q.push(name, crit, 1, deadline_s=10, now_s=0).accepted
    assert drain(q) == ["cp1", "c1", "c2", "sp1", "s1", "s2"]
    assert len(q) == 0 and q.units == 0


def test_lifo_within_a_criticality_under_overload() -> None:
    q: AdmissionQueue[str] = AdmissionQueue()
    for name, crit in [("c1", C), ("s1", S), ("c2", C), ("s2", S)]:
        q.push(name, crit, 1, deadline_s=10, now_s=0)
    assert drain(q, lifo=True) == ["c2", "c1", "s2", "s1"]


def test_full_queue_displaces_newest_of_the_lowest_criticality() -> None:
    q: AdmissionQueue[str] = AdmissionQueue(max_items=3)
    for name, crit in [("s1", S), ("s2", S), ("sp1", SP)]:
        assert q.push(name, crit, 1, 10, 0).accepted
    result = q.push("c1", C, 1, 10, 0)
    assert result.accepted and [w.item for w in result.evicted] == ["s2"]
    result = q.push("s3", S, 1, 10, 0)  # the lowest criticality is itself rejected
    assert not result.accepted and result.evicted == ()
    result = q.push("sp2", SP, 1, 10, 0)
    assert result.accepted and [w.item for w in result.evicted] == ["s1"]
    result = q.push("sp3", SP, 1, 10, 0)  # no one strictly lower left: equal is not displaced
    assert not result.accepted
    assert drain(q) == ["c1", "sp1", "sp2"]


def test_unit_bound_displaces_as_many_as_needed_or_none() -> None:
    q: AdmissionQueue[str] = AdmissionQueue(max_items=100, max_units=100)
    for i in range(4):
        assert q.push(f"s{i}", S, 20, 10, 0).accepted
    assert q.push("sp", SP, 15, 10, 0).accepted
    assert q.units == 95
    before = q.units
    assert not q.push("c-huge", C, 101, 10, 0).accepted  # could never fit
    assert not q.push("sp-big", SP, 90, 10, 0).accepted  # 4 x 20 lower is not enough: nothing moves
    assert q.units == before and len(q) == 5
    result = q.push("c", C, 50, 10, 0)
    assert result.accepted
    assert [w.item for w in result.evicted] == ["s3", "s2", "s1"]  # newest first, until 45 are free
    assert q.units == pytest.approx(95 - 60 + 50)


def test_expired_items_are_never_started_and_handed_back_once() -> None:
    q: AdmissionQueue[str] = AdmissionQueue()
    q.push("c-old", C, 1, deadline_s=1.0, now_s=0)
    q.push("c-new", C, 1, deadline_s=5.0, now_s=0.5)
    q.push("s", S, 1, deadline_s=1.0, now_s=0)
    popped = q.pop_ready(admit_all, now_s=2.0)
    assert popped is not None and popped.item == "c-new"
    assert q.pop_ready(admit_all, now_s=2.0) is None
    assert sorted(w.item for w in q.expire(2.0)) == ["c-old", "s"]
    assert q.expire(2.0) == [] and len(q) == 0
    assert not q.push("late", C, 1, deadline_s=2.0, now_s=2.0).accepted


def test_blocked_head_blocks_its_tier_not_lower_reserves() -> None:
    q: AdmissionQueue[str] = AdmissionQueue()
    q.push("c-big", C, 50, 10, 0)
    q.push("c-small", C, 1, 10, 0)
    q.push("s", S, 1, 10, 0)
    asked: list[tuple[Criticality, float]] = []

    def small_only(crit: Criticality, units: float) -> bool:
        asked.append((crit, units))
        return units <= 1

    popped = q.pop_ready(small_only, 0.0)
    assert popped is not None and popped.item == "s"  # c-small does not jump its own tier's head
    assert asked == [(C, 50), (S, 1)]


def test_estimated_wait_counts_work_ahead() -> None:
    q: AdmissionQueue[str] = AdmissionQueue()
    q.push("cp", CP, 100, 10, 0)
    q.push("c", C, 200, 10, 0)
    q.push("s", S, 400, 10, 0)
    assert q.estimated_wait_s(CP, 100.0) == pytest.approx(1.0)
    assert q.estimated_wait_s(C, 100.0, units=100) == pytest.approx(4.0)
    assert q.estimated_wait_s(S, 100.0) == pytest.approx(7.0)
    assert q.estimated_wait_s(S, 0.0) == math.inf
    assert AdmissionQueue[str]().estimated_wait_s(S, 0.0) == 0.0


@settings(max_examples=300, deadline=None)
@given(
    st.integers(1, 8),
    st.floats(5, 100),
    st.lists(
        st.tuples(
            st.sampled_from(["push", "push", "push", "pop", "expire"]),
            st.sampled_from(list(Criticality)),
            st.floats(0, 30),  # units
            st.floats(0, 3),  # deadline, seconds after now
            st.floats(0, 0.5),  # time passing before the op
        ),
        max_size=120,
    ),
)
def test_queue_bounds_order_and_accounting(
    max_items: int, max_units: float, operations: list[tuple[str, Criticality, float, float, float]]
) -> None:
    q: AdmissionQueue[int] = AdmissionQueue(max_items=max_items, max_units=max_units)
    waiting: dict[int, Waiting[int]] = {}
    now_s = 0.0
    for seq, (op, crit, units, ttl_s, dt_s) in enumerate(operations):
        now_s += dt_s
        if op == "push":
            result = q.push(seq, crit, units, now_s + ttl_s, now_s)
            for w in result.evicted:
                assert w.criticality < crit
                assert waiting.pop(w.item) == w  # every displaced item was waiting, once
                # Newest of its tier: nothing left behind in that tier arrived later.
                same_tier = [o for o in waiting.values() if o.criticality == w.criticality]
                assert all(o.enqueued_s <= w.enqueued_s for o in same_tier)
            if result.accepted:
                waiting[seq] = Waiting(seq, crit, units, now_s + ttl_s, now_s)
            else:
                assert result.evicted == ()
                if now_s + ttl_s > now_s and units <= max_units:
                    # Rejected only when nothing strictly lower could make room.
                    lower_units = sum(w.units for w in waiting.values() if w.criticality < crit)
                    lower_items = sum(1 for w in waiting.values() if w.criticality < crit)
                    fits_items = len(waiting) - lower_items + 1 <= max_items
                    fits_units = q.units - lower_units + units <= max_units + 1e-9
                    assert not (fits_items and fits_units)
        elif op == "pop":
            popped = q.pop_ready(admit_all, now_s)
            live = [w for w in waiting.values() if w.deadline_s > now_s]
            if popped is None:
                assert live == []
            else:
                assert popped.deadline_s > now_s
                assert waiting.pop(popped.item) == popped
                top = max(w.criticality for w in live)
                assert popped.criticality == top
                assert popped.enqueued_s <= min(w.enqueued_s for w in live if w.criticality == top)
        else:
            for w in q.expire(now_s):
                assert w.deadline_s <= now_s
                assert waiting.pop(w.item) == w
            assert all(w.deadline_s > now_s for w in waiting.values())
        assert len(q) == len(waiting) <= max_items
        assert q.units == pytest.approx(sum(w.units for w in waiting.values()), abs=1e-6)
        assert q.units <= max_units + 1e-6


# --- CoDel ----------------------------------------------------------------------------------------


def test_codel_leaves_short_queues_and_bursts_alone() -> None:
    codel = CoDel(target_s=0.005, interval_s=0.1)
    now_s = 0.0
    for _ in range(1000):
        now_s += 0.001
        assert not codel.on_dequeue(now_s, 0.004)
    for _ in range(90):  # above target, but for less than an interval: a burst
        now_s += 0.001
        assert not codel.on_dequeue(now_s, 0.050)
    now_s += 0.001
    assert not codel.on_dequeue(now_s, 0.001)
    assert not codel.dropping


def test_codel_sheds_a_standing_queue_ever_faster_then_stops() -> None:
    codel = CoDel(target_s=0.005, interval_s=0.1)
    now_s = 0.0
    drops: list[float] = []
    for _ in range(2000):  # one dequeue per ms, each having waited 50 ms
        now_s += 0.001
        if codel.on_dequeue(now_s, 0.050):
            drops.append(now_s)
    assert drops[0] == pytest.approx(0.101, abs=0.0015)  # first drop after one full interval
    gaps = [b - a for a, b in itertools.pairwise(drops)]
    # Control law: the n-th gap is interval / sqrt(n), to the millisecond of the dequeue clock.
    for n, gap in enumerate(gaps[:20], start=1):
        assert gap == pytest.approx(0.1 / math.sqrt(n), abs=0.0011)
    assert codel.dropping and codel.drop_count == len(drops)
    assert not codel.on_dequeue(now_s + 0.001, 0.001)  # queue drained below target
    assert not codel.dropping


def test_codel_reentry_resumes_near_the_previous_rate() -> None:
    codel = CoDel(target_s=0.005, interval_s=0.1)
    now_s = 0.0
    for _ in range(1000):
        now_s += 0.001
        codel.on_dequeue(now_s, 0.050)
    count = codel.drop_count
    now_s += 0.001
    codel.on_dequeue(now_s, 0.0)  # leaves the dropping state briefly
    for _ in range(200):
        now_s += 0.001
        if codel.on_dequeue(now_s, 0.050):
            break
    assert codel.drop_count > 1 and codel.drop_count >= count - 2
    codel.on_empty()
    assert not codel.dropping


def test_codel_rejects_bad_parameters() -> None:
    with pytest.raises(ValueError):
        CoDel(target_s=0.2, interval_s=0.1)


# --- DrainRate ------------------------------------------------------------------------------------


def test_drain_rate_tracks_a_steady_rate_and_its_change() -> None:
    rate = DrainRate(tau_s=1.0, tick_s=0.1)
    assert rate.units_per_s(0.0) == 0.0
    assert rate.seconds_to_drain(10, 0.0) == math.inf
    now_s = 0.0
    for _ in range(500):  # 1000 units/s for 5 s
        now_s += 0.01
        rate.on_complete(now_s, 10)
    assert rate.units_per_s(now_s) == pytest.approx(1000, rel=0.02)
    assert rate.seconds_to_drain(500, now_s) == pytest.approx(0.5, rel=0.02)
    for _ in range(500):  # halves
        now_s += 0.01
        rate.on_complete(now_s, 5)
    assert rate.units_per_s(now_s) == pytest.approx(500, rel=0.02)


def test_drain_rate_decays_through_silence() -> None:
    rate = DrainRate(tau_s=1.0, tick_s=0.1)
    now_s = 0.0
    for _ in range(300):
        now_s += 0.01
        rate.on_complete(now_s, 10)
    busy = rate.units_per_s(now_s)
    assert rate.units_per_s(now_s + 5.0) < busy * 0.05  # five time constants later
    assert rate.seconds_to_drain(0, now_s) == 0.0


def test_critical_reserve_keeps_room_so_critical_work_displaces_nothing() -> None:
    q: AdmissionQueue[str] = AdmissionQueue(max_items=8, max_units=800, critical_reserve=0.25)
    for i in range(6):  # sheddable work may fill 6 of 8 places
        assert q.push(f"s{i}", Criticality.SHEDDABLE, 100, 10.0, 0.0).accepted
    assert not q.push("s6", Criticality.SHEDDABLE, 100, 10.0, 0.0).accepted  # refused at once
    plus = q.push("p0", Criticality.SHEDDABLE_PLUS, 100, 10.0, 0.0)  # displaces within the allowance
    assert plus.accepted and [w.item for w in plus.evicted] == ["s5"]
    for i in range(2):  # critical work finds the reserved places free
        result = q.push(f"c{i}", Criticality.CRITICAL, 100, 10.0, 0.0)
        assert result.accepted and result.evicted == ()
    assert len(q) == 8 and q.units == 800
    third = q.push("c2", Criticality.CRITICAL, 100, 10.0, 0.0)  # only beyond the reserve does it displace
    assert third.accepted and [w.item for w in third.evicted] == ["s4"]


def test_an_empty_queue_takes_any_arrival_that_fits_the_full_bound() -> None:
    q: AdmissionQueue[str] = AdmissionQueue(max_items=4, max_units=100, critical_reserve=0.5)
    assert q.push("big", Criticality.SHEDDABLE, 90, 10.0, 0.0).accepted
    with pytest.raises(ValueError):
        AdmissionQueue(critical_reserve=1.0)
