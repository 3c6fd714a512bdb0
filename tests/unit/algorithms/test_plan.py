"""The retry plan of one client request, on plain numbers (no clock, no I/O)."""

from dataclasses import dataclass

from hypothesis import given, settings
from hypothesis import strategies as st

from seawall.algorithms.outcome import Outcome
from seawall.algorithms.plan import Backoff, GiveUp, PlanSettings, Send, SendPlan
from seawall.algorithms.retry_budget import RetryBudget


@dataclass(frozen=True)
class Dep:
    name: str


A, B, C = Dep("a"), Dep("b"), Dep("c")


def plan(max_attempts=3, budget=None, deadline_s=100.0, max_requeues=2, client_retries=0, u=0.5):
    settings_ = PlanSettings(max_attempts=max_attempts, backoff_base_s=0.1, backoff_cap_s=1.0,
                             max_requeues=max_requeues)
    return SendPlan(settings_, budget or RetryBudget(0.2, 100.0, 10.0), lambda: u, deadline_s=deadline_s,
                    client_retries=client_retries)


def test_fails_over_in_order_then_gives_up_when_attempts_are_used():
    p = plan()
    p.begin_round([A, B, C])
    assert p.next(0.0) == Send(A)
    assert p.on_outcome(A, Outcome.FAILURE) is None
    assert p.next(0.0) == Send(B)
    assert p.on_outcome(B, Outcome.FAILURE) is None
    assert p.next(0.0) == Send(C)
    assert p.on_outcome(C, Outcome.FAILURE) is None
    assert p.next(0.0) == GiveUp("exhausted")
    assert p.tried == ["a", "b", "c"] and p.sent == 3


def test_one_deployment_is_retried_after_a_full_jitter_backoff():
    p = plan(u=0.5)
    p.begin_round([A])
    assert p.next(0.0) == Send(A)
    p.on_outcome(A, Outcome.FAILURE)
    step = p.next(1.0)
    assert isinstance(step, Backoff) and step.deployment == A
    assert step.until_s == 1.0 + 0.5 * 0.1  # u * min(cap, base * 2**0)
    p.on_outcome(A, Outcome.FAILURE)
    step = p.next(2.0)
    assert isinstance(step, Backoff) and step.until_s == 2.0 + 0.5 * 0.2
    p.on_outcome(A, Outcome.FAILURE)
    assert p.next(3.0) == GiveUp("exhausted")


def test_a_deployment_that_said_429_is_not_sent_to_again_in_the_round():
    p = plan()
    p.begin_round([A])
    assert p.next(0.0) == Send(A)
    assert p.on_outcome(A, Outcome.OVERLOADED) is None
    assert p.next(0.0) == GiveUp("exhausted")


def test_no_retry_past_the_deadline_or_when_the_backoff_would_cross_it():
    p = plan(deadline_s=1.0)
    p.begin_round([A, B])
    p.next(0.0)
    p.on_outcome(A, Outcome.FAILURE)
    assert p.next(1.0) == GiveUp("deadline")
    p = plan(deadline_s=1.02, u=0.5)
    p.begin_round([A])
    p.next(0.0)
    p.on_outcome(A, Outcome.FAILURE)
    assert p.next(1.0) == GiveUp("deadline")  # 1.0 + 0.05 >= 1.02


def test_the_budget_pays_for_every_retry():
    budget = RetryBudget(0.2, 0.0, 10.0)  # nothing deposited: no retry allowed
    p = plan(budget=budget)
    p.begin_round([A, B])
    assert p.next(0.0) == Send(A)  # the first send is free
    p.on_outcome(A, Outcome.FAILURE)
    assert p.next(0.0) == GiveUp("retry_budget")
    assert budget.denied_total == 1


def test_client_errors_successes_and_cancellations_end_the_plan():
    for outcome in (Outcome.CLIENT_ERROR, Outcome.SUCCESS, Outcome.CANCELLED):
        p = plan()
        p.begin_round([A, B])
        p.next(0.0)
        assert p.on_outcome(A, outcome) == GiveUp("failed")


def test_a_breaker_refusal_costs_no_attempt():
    p = plan(max_attempts=2)
    p.begin_round([A, B, C])
    assert p.next(0.0) == Send(A)
    p.on_refused()
    assert p.next(0.0) == Send(B)  # no budget asked: nothing was sent yet
    assert p.tried == ["b"] and p.sent == 0


def test_requeues_only_after_a_429_each_paid_and_bounded():
    p = plan(max_requeues=2)
    assert not p.requeue(0.0, Outcome.FAILURE)
    assert p.requeue(0.0, Outcome.OVERLOADED)
    assert p.requeue(0.0, Outcome.OVERLOADED)
    assert not p.requeue(0.0, Outcome.OVERLOADED)
    assert p.requeues == 2
    broke = plan(budget=RetryBudget(0.2, 0.0, 10.0))
    assert not broke.requeue(0.0, Outcome.OVERLOADED)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from([Outcome.FAILURE, Outcome.OVERLOADED]), min_size=1, max_size=40),
       st.integers(1, 5), st.integers(0, 3), st.integers(1, 4))
def test_sends_never_exceed_max_attempts_plus_requeues(outcomes, max_attempts, max_requeues, n_deps):
    """One retry plan per client request: however the rounds and outcomes fall, at most
    ``max_attempts`` sends plus one per requeue (issue 11 item 5)."""
    p = plan(max_attempts=max_attempts, max_requeues=max_requeues, deadline_s=1e9)
    deps = [Dep(str(i)) for i in range(n_deps)]
    it = iter(outcomes)
    now = 0.0
    while True:
        p.begin_round(deps)
        last = None
        while True:
            step = p.next(now)
            if isinstance(step, GiveUp):
                break
            if isinstance(step, Backoff):
                now = step.until_s
            outcome = next(it, Outcome.FAILURE)
            last = outcome
            p.on_outcome(step.deployment, outcome)
        if last is None or not p.requeue(now, last):
            break
    assert p.sent <= max_attempts + p.requeues
    assert p.requeues <= max_requeues
