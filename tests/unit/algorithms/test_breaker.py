import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from seawall.algorithms.breaker import BreakerState, CircuitBreaker, Permit
from seawall.algorithms.outcome import Outcome

CLOSED, OPEN, HALF_OPEN = BreakerState.CLOSED, BreakerState.OPEN, BreakerState.HALF_OPEN


def fail(b: CircuitBreaker, now: float, n: int = 1) -> None:
    for _ in range(n):
        permit = b.allow(now)
        assert permit is not None
        b.on_failure(now, permit)


def succeed(b: CircuitBreaker, now: float, n: int = 1) -> None:
    for _ in range(n):
        permit = b.allow(now)
        assert permit is not None
        b.on_success(now, permit)


def test_consecutive_failures_open_it():
    b = CircuitBreaker(consecutive_failures_to_open=3)
    fail(b, 0.0, 2)
    succeed(b, 0.1)  # a success resets the run
    fail(b, 0.2, 2)
    assert b.state(0.2) is CLOSED
    fail(b, 0.3)
    assert b.state(0.3) is OPEN
    assert b.allow(0.4) is None
    assert b.retry_after_s(1.3) == pytest.approx(4.0)


def test_failure_rate_opens_it_only_with_enough_requests():
    b = CircuitBreaker(failure_rate_threshold=0.5, min_requests=10, consecutive_failures_to_open=100)
    for i in range(4):
        fail(b, i * 0.1)
        succeed(b, i * 0.1)
    assert b.state(1.0) is CLOSED  # 4/8 but only 8 requests
    succeed(b, 1.0)
    fail(b, 1.0)
    assert b.state(1.0) is OPEN  # 5/10


def test_old_failures_slide_out_of_the_window():
    b = CircuitBreaker(window_s=10, min_requests=10, consecutive_failures_to_open=100)
    fail(b, 0.0, 9)
    succeed(b, 5.0, 10)
    assert b.failure_rate(9.5) == pytest.approx(9 / 19)
    assert b.failure_rate(10.5) == 0.0
    fail(b, 10.5)
    assert b.state(10.5) is CLOSED  # 1/11: the nine early failures are gone


@pytest.mark.parametrize("outcome", [Outcome.OVERLOADED, Outcome.CLIENT_ERROR, Outcome.CANCELLED])
def test_rate_limits_and_client_errors_never_open_it(outcome):
    b = CircuitBreaker(consecutive_failures_to_open=2, min_requests=1)
    for i in range(100):
        permit = b.allow(i * 0.01)
        assert permit is not None
        b.on_result(i * 0.01, permit, outcome)
    assert b.state(1.0) is CLOSED
    fail(b, 1.0)
    assert b.state(1.0) is OPEN  # min_requests=1: neutral results did not dilute the rate either


def test_half_open_probes_then_closes():
    b = CircuitBreaker(consecutive_failures_to_open=1, open_s=5, half_open_max_probes=1,
                       probe_successes_to_close=2)
    fail(b, 0.0)
    assert b.state(4.99) is OPEN
    assert b.state(5.0) is HALF_OPEN
    p1 = b.allow(5.0)
    assert p1 is not None and p1.probe
    assert b.allow(5.0) is None  # one probe at a time
    b.on_success(5.5, p1)
    assert b.state(5.5) is HALF_OPEN
    p2 = b.allow(5.5)
    assert p2 is not None
    b.on_success(6.0, p2)
    assert b.state(6.0) is CLOSED
    assert b.failure_rate(6.0) == 0.0


def test_probe_failure_reopens_with_doubling_duration_then_resets():
    b = CircuitBreaker(consecutive_failures_to_open=1, open_s=5, max_open_s=12, probe_successes_to_close=1)
    fail(b, 0.0)
    now = 0.0
    for expected_open_s in (10, 12, 12):  # 5 * 2 = 10, then capped at 12
        now += b.retry_after_s(now)
        probe = b.allow(now)
        assert probe is not None and probe.probe
        b.on_failure(now, probe)
        assert b.retry_after_s(now) == pytest.approx(expected_open_s)
    now += 12
    succeed(b, now)  # the probe succeeds: clean close
    assert b.state(now) is CLOSED
    fail(b, now)
    assert b.retry_after_s(now) == pytest.approx(5)  # reset after a clean close


def test_neutral_probe_result_frees_the_slot_without_deciding():
    b = CircuitBreaker(consecutive_failures_to_open=1, open_s=1)
    fail(b, 0.0)
    probe = b.allow(1.0)
    assert probe is not None
    b.on_result(1.1, probe, Outcome.OVERLOADED)
    assert b.state(1.1) is HALF_OPEN
    assert b.allow(1.1) is not None


def test_forgotten_probe_slot_is_released_after_its_lease():
    b = CircuitBreaker(consecutive_failures_to_open=1, open_s=1, probe_lease_s=30)
    fail(b, 0.0)
    lost = b.allow(1.0)
    assert lost is not None
    assert b.allow(30.9) is None
    fresh = b.allow(31.0)
    assert fresh is not None and fresh.probe_id != lost.probe_id
    b.on_failure(31.5, lost)  # the late report for the expired lease is ignored
    assert b.state(31.5) is HALF_OPEN


def test_stale_results_from_an_older_generation_are_ignored():
    b = CircuitBreaker(consecutive_failures_to_open=2, open_s=1, probe_successes_to_close=1)
    slow = [b.allow(0.0) for _ in range(3)]
    fail(b, 0.0, 2)
    assert b.state(0.0) is OPEN
    probe = b.allow(1.0)
    assert probe is not None
    b.on_success(1.0, slow[0])  # not a probe: cannot close it
    assert b.state(1.0) is HALF_OPEN
    b.on_success(1.0, probe)
    assert b.state(1.0) is CLOSED
    for permit in slow[1:]:  # failures from before the recovery do not re-open it
        assert permit is not None
        b.on_failure(1.1, permit)
    fail(b, 1.1)
    assert b.state(1.1) is CLOSED


def test_invalid_configuration_rejected():
    with pytest.raises(ValueError):
        CircuitBreaker(failure_rate_threshold=0)
    with pytest.raises(ValueError):
        CircuitBreaker(open_s=10, max_open_s=5)


ops = st.lists(
    st.tuples(
        st.sampled_from(["allow", "allow", "report", "advance"]),
        st.sampled_from(list(Outcome)),
        st.integers(0, 50),
        st.floats(0, 3),
    ),
    max_size=200,
)


@settings(max_examples=200)
@given(st.integers(1, 4), ops)
def test_never_more_than_max_probes_outstanding(max_probes, steps):
    lease_s = 1000.0
    b = CircuitBreaker(consecutive_failures_to_open=2, min_requests=3, open_s=1, max_open_s=4,
                       half_open_max_probes=max_probes, probe_successes_to_close=2, probe_lease_s=lease_s)
    now = 0.0
    held: list[tuple[Permit, float]] = []
    for op, outcome, pick, gap in steps:
        if op == "allow":
            permit = b.allow(now)
            if permit is not None:
                held.append((permit, now))
        elif op == "report" and held:
            permit, _ = held.pop(pick % len(held))
            b.on_result(now, permit, outcome)
        else:
            now += gap
        outstanding = [p for p, at in held if p.probe and p.generation == b.generation and at + lease_s > now]
        assert len(outstanding) <= max_probes
        assert b.probes_in_flight(now) <= max_probes
        if b.state(now) is not HALF_OPEN:
            assert b.probes_in_flight(now) == 0
