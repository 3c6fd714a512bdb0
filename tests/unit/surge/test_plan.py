import pytest

from seawall.surge.plan import parse_slos, plan_capacity
from seawall.surge.sim import simulate
from tests.unit.surge.conftest import tiny


def test_slo_specs_by_tier_or_criticality(tiny_scenario):
    slos = parse_slos(tiny_scenario, ["critical=99.9", "free.p99=2", "sheddable_plus=50"])
    assert slos["api"].success_rate_pct == 99.9  # api is the critical tier
    assert slos["free"].p99_latency_s == 2
    assert slos["plus"].success_rate_pct == 50
    assert parse_slos(tiny_scenario, []) == tiny_scenario.slo
    for bad, message in [("critical", "expected NAME=PERCENT"), ("gold=9", "neither a tier"),
                         ("critical_plus=99", "no tier of the scenario"), ("api=120", "percentage"),
                         ("api.p50=1", "unknown metric")]:
        with pytest.raises(ValueError, match=message):
            parse_slos(tiny_scenario, [bad])


def test_plan_finds_the_smallest_capacity_that_meets_the_slo():
    scenario = tiny(upstream={"models": [{"name": "chat", "deployments": [
        {"name": "a", "max_in_flight": 40, "base_latency_s": 0.2, "tokens_per_s": 0}]}]})
    slos = parse_slos(scenario, ["plus=90"])
    result = plan_capacity(scenario, slos, profile="naive", tolerance=0.05)
    assert result.answer is not None and result.total_capacity is not None
    passing = [t for t in result.trials if t["meets"]]
    failing = [t for t in result.trials if not t["meets"]]
    assert passing and failing
    assert max(t["total_capacity"] for t in failing) < result.total_capacity
    assert min(t["total_capacity"] for t in passing) == result.total_capacity
    # and the answer really is where the SLO starts to hold
    smaller = max(1, result.total_capacity - 3)
    check = tiny(upstream={"models": [{"name": "chat", "deployments": [
        {"name": "a", "max_in_flight": smaller, "base_latency_s": 0.2, "tokens_per_s": 0}]}]})
    assert simulate(check, "naive").recorder.summary(1)["success_rate_pct"] < 90


def test_plan_by_replicas_and_no_slo():
    scenario = tiny(slo={})
    with pytest.raises(ValueError, match="no SLOs"):
        plan_capacity(scenario, {})
    result = plan_capacity(tiny(), {"api": tiny().slo["api"]}, vary="replicas", hi=2)
    assert result.answer == 1.0
