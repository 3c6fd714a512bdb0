"""The pacer (algorithms/pacing.py) on a fake clock: plain numbers, the pacer takes time as an
argument."""

import math

import pytest

from seawall.algorithms.pacing import Budget, Pacer, RateLimitReport

# -- the pacer ----------------------------------------------------------------------------------

def _requests(limit, remaining, reset_s, retry_after_s=None):
    return RateLimitReport((Budget("requests", limit, remaining, reset_s),), retry_after_s)


def test_sends_freely_until_the_budget_runs_out_then_waits_for_the_refill():
    p = Pacer()
    p.observe(0.0, _requests(60, 3, 57.0))  # 1 request a second refills; 3 left
    now = 0.0
    for _ in range(3):
        assert p.ready_at(now, 100) == now
        p.on_send(now, 100)
    assert p.exhausted(now)  # paced *before* the 429 would come
    assert p.ready_at(now, 100) == pytest.approx(1.0)
    assert p.ready_at(0.5, 100) == pytest.approx(1.0)
    assert p.ready_at(1.0, 100) == 1.0


def test_a_fresh_statement_replaces_the_estimate():
    p = Pacer()
    p.observe(0.0, _requests(60, 0, 60.0))
    assert p.ready_at(0.0, 1) == pytest.approx(1.0)
    p.observe(0.2, _requests(60, 60, 0.0))  # the window reset: full again
    assert p.ready_at(0.2, 1) == 0.2
    assert p.states_budget(0.2)


def test_tokens_are_charged_by_the_request_size():
    p = Pacer()
    p.observe(0.0, RateLimitReport((Budget("tokens", 6000, 1000, 50.0),)))  # refills 100 tokens/s
    assert p.ready_at(0.0, 800) == 0.0
    p.on_send(0.0, 800)
    assert p.ready_at(0.0, 800) == pytest.approx(6.0)  # 200 left, 600 more at 100/s
    assert p.ready_at(0.0, 10_000) == 0.0  # never fits: the provider says so, not the pacer


def test_retry_after_holds_every_send():
    p = Pacer()
    p.observe(0.0, _requests(60, 30, 30.0, retry_after_s=2.0), refused=True, units=100)
    assert p.ready_at(0.0, 1) == 2.0
    assert p.ready_at(2.0, 1) == 2.0


def test_a_429_without_headers_still_holds_for_its_hint():
    p = Pacer()
    p.observe(0.0, RateLimitReport((), 1.5), refused=True)
    assert p.ready_at(0.5, 1) == 1.5


def test_a_concurrency_count_is_not_a_budget():
    """Fixed-slot servers state free slots with a reset of 0: nothing refills on a clock."""
    p = Pacer()
    p.observe(0.0, _requests(64, 0, 0.0, retry_after_s=0.6), refused=True, units=100)
    assert not p.states_budget(0.0)
    assert p.ready_at(0.0, 100) == 0.0  # the deployment's cooldown steers traffic, not a hold
    assert not p.exhausted(0.0)


def test_learns_a_quantized_budget_from_one_429():
    """A minute's budget enforced per second: ``remaining`` (in the minute's terms) falls by 60 a
    request, and the provider refuses below 60. One 429 with its headers says so."""
    p = Pacer()
    # 2400/min enforced as 40/s: the bucket refills 2400 header units a second; 50 left, and the
    # provider wants 60 (one request) so it says "come back when 10 more have refilled"
    rate = 2400.0
    p.observe(0.0, _requests(2400, 50, (2400 - 50) / rate, retry_after_s=(60 - 50) / rate), refused=True, units=100)
    hold = (60 - 50) / rate
    assert p.ready_at(hold, 1) == pytest.approx(hold)
    p.observe(1.0, _requests(2400, 2400, 0.0))
    now = 1.0
    sent = 0
    while p.ready_at(now, 1) == now:
        p.on_send(now, 1)
        sent += 1
    assert sent == 40  # what the per-second bucket holds, not 2400


def test_the_lesson_fades():
    p = Pacer(scale_half_life_s=60.0)
    p.observe(0.0, _requests(100, 0, 1.0, retry_after_s=0.1), refused=True, units=1)  # scale ~10
    p.observe(600.0, _requests(100, 100, 0.0))
    now = 600.0
    sent = 0
    while p.ready_at(now, 1) == now and sent < 200:
        p.on_send(now, 1)
        sent += 1
    assert 90 <= sent <= 100


def test_replicas_sharing_a_key_spend_their_share():
    """Two replicas on one key: each sees the other's spending in the headers and keeps to its share."""
    limit, rate = 600.0, 10.0  # a second's refill is 10 requests
    level = limit
    pacers = [Pacer(), Pacer()]
    sent = [0, 0]
    t = 0.0
    refused = 0
    step = 0.01
    while t < 60.0:
        level = min(limit, level + rate * step)
        for i, p in enumerate(pacers):
            if p.ready_at(t, 1) <= t:  # each wants more than the budget allows
                if level >= 1:
                    level -= 1
                    p.on_send(t, 1)
                    sent[i] += 1
                    p.observe(t, _requests(limit, math.floor(level), (limit - level) / rate))
                else:
                    refused += 1
                    p.observe(t, _requests(limit, math.floor(level), (limit - level) / rate,
                                           retry_after_s=(1 - level) / rate), refused=True, units=1)
        t += step
    assert sum(sent) <= limit + rate * 60 + 1
    assert sum(sent) >= 0.9 * (limit + rate * 60 - 20)  # the budget is used
    assert refused <= 10  # and hardly any 429s once the share is known
    assert min(sent) > 0.3 * sum(sent)


def test_a_stale_budget_is_forgotten():
    p = Pacer(stale_s=10.0)
    p.observe(0.0, _requests(60, 0, 60.0))
    assert p.ready_at(0.5, 1) == pytest.approx(1.0)
    assert p.ready_at(11.0, 1) == 11.0
    assert not p.states_budget(11.0)


def test_settings_are_checked():
    with pytest.raises(ValueError):
        Pacer(min_share=0.0)
    with pytest.raises(ValueError):
        Pacer(stale_s=0.0)
