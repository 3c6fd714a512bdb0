"""The lease book alone: what it decides in-process, what it asks, what a sync sends, what a failed
sync keeps, and where the fail-static counters start (pure, explicit time)."""

import math

import pytest

from seawall.algorithms.quota import DAY_S, Dimension, LocalQuota, QuotaLimits, QuotaScope
from seawall.algorithms.quota_lease import LEAD_INTERVALS, LeaseBook, ScopeState

T = 20_000 * DAY_S + 3600.0  # shared clock (unix seconds)
NOW = 500.0  # this replica's monotonic clock
KEY = QuotaScope("key", "k", "t", QuotaLimits(requests_per_min=60, tokens_per_min=6000, tokens_per_day=100_000))


def state(rpm_ahead_s=0.0, tpm_ahead_s=0.0, used=0, granted=(0, 0, 0)) -> ScopeState:
    return ScopeState(T + rpm_ahead_s, T + tpm_ahead_s, int(T // DAY_S), used, granted)


def test_nothing_known_means_ask_then_leases_decide_and_are_charged_here():
    book = LeaseBook()
    assert book.decide((KEY,), 100, NOW, T) is None  # never seen: ask
    book.answered((KEY,), [state(1.0, 1.0, 100, granted=(3, 300, 300))], T, NOW, True, 100)
    for _ in range(3):
        d = book.decide((KEY,), 100, NOW, T)
        assert d is not None and d.allowed
    lease = book.get(KEY)
    assert lease is not None and lease.held == [0, 0, 0] and lease.spent == [4, 400, 400]
    assert book.decide((KEY,), 100, NOW, T) is None  # the lease is spent: ask again
    # headers: the snapshot's room plus what this replica still holds
    book.answered((KEY,), [state(1.0 + 3.0, 1.0, 400, granted=(2, 0, 0))], T, NOW, True, 1)
    assert lease.held[0] == 2


def test_a_window_the_snapshot_shows_exhausted_is_refused_here_until_it_refills():
    book = LeaseBook()
    book.answered((KEY,), [state(rpm_ahead_s=60.0)], T, NOW, False, 100)  # all 60 requests of the minute used
    d = book.decide((KEY,), 100, NOW, T)
    assert d is not None and not d.allowed and d.refused is Dimension.REQUESTS
    assert d.retry_after_s == pytest.approx(1.0) and d.requests is not None and d.requests.remaining == 0
    assert book.decide((KEY,), 100, NOW + 1.0, T + 1.0) is None  # one refilled: ask for it
    book.answered((KEY,), [state(used=99_950)], T, NOW, False, 100)
    d = book.decide((KEY,), 100, NOW, T)
    assert d is not None and d.refused is Dimension.DAILY_TOKENS
    assert d.retry_after_s == pytest.approx(DAY_S - 3600.0)  # until UTC midnight
    big = book.decide((KEY,), 10_000, NOW, T)
    assert big is not None and big.retry_after_s == math.inf  # more than the bucket itself


def test_plan_tops_up_to_the_demand_gives_idle_cells_back_and_charges_debts():
    book = LeaseBook()
    book.answered((KEY,), [state(granted=(10, 1000, 1000))], T, NOW, True, 100)
    for _ in range(5):
        assert book.decide((KEY,), 100, NOW, T) is not None
    (op,) = book.plan(T)
    lease = book.get(KEY)
    assert lease is not None
    target = math.ceil(LEAD_INTERVALS * 6)  # 6 requests this interval
    assert op.adjust == (0, 0, 0) and op.want[0] == target - 5
    book.settle((KEY,), +2000, T)  # used 2,000 more tokens than estimated: a debt
    assert lease.held[1] == 500 - 2000
    (op,) = book.plan(T)
    assert op.adjust[1] == 1500 and lease.held[1] == 0  # the debt is sent, and leaves the lease
    book.failed(op)
    assert lease.held[1] == -1500  # not known to be charged: kept
    for _ in range(12):  # idle: everything goes back, then nothing more to do
        ops = book.plan(T)
        for o in ops:
            book.applied(o, state(), T, NOW)
    assert lease.held == [0, 0, 0] and book.plan(T) == []


def test_a_sync_in_flight_never_lets_a_block_be_used_beyond_what_it_shrinks_to():
    book = LeaseBook()
    conc = QuotaScope("key", "c", "t", QuotaLimits(concurrent_requests=100))
    book.answered((conc,), [ScopeState(T, T, 0, 0, slots=4, in_flight=4)], T, NOW, False, 0)
    assert all(book.decide((conc,), 0, NOW, T) is not None for _ in range(3))  # from the block of 4
    for _ in range(3):
        assert book.release((conc,)) == []  # far from the limit: nothing to give back at once
    lease = book.get(conc)
    assert lease is not None and lease.busy == 0
    while True:  # the block follows the demand: up after the peak of 3, then down as it decays
        (op,) = book.plan(T)
        if op.slots < lease.slots:
            break
        book.applied(op, ScopeState(T, T, 0, 0, slots=op.slots, in_flight=op.slots), T, NOW)
    assert lease.shrinking == op.slots and op.slots > 0
    for _ in range(op.slots):
        assert book.decide((conc,), 0, NOW, T) is not None
    assert book.decide((conc,), 0, NOW, T) is None  # beyond what the block shrinks to: ask


def test_fallback_starts_from_this_replicas_share_of_the_snapshot():
    book, local = LeaseBook(), LocalQuota()
    book.answered((KEY,), [state(rpm_ahead_s=30.0, used=60_000)], T, NOW, True, 100)
    share = QuotaScope("key", "k", "t", KEY.limits.share(2))
    local.seed(share, *book.seed(KEY, 2, NOW, T))
    d = local.acquire((share,), 100, NOW, T)  # a burst of 30 at 1/2: half of it used already
    assert d.allowed and d.requests is not None and d.requests.remaining == 14
    assert local.peek(share, NOW, T)[3] == 30_000 + 100  # tokens today: half of the 60,000, and this one
    assert book.seed(QuotaScope("key", "never", "t", KEY.limits), 2, NOW, T) == (None, None, int(T // DAY_S), None)
