import json

import pytest

from seawall.surge.profiles import gateway_config
from seawall.surge.sim import INVALID_TIER, Simulation, simulate
from tests.unit.surge.conftest import tiny

TWO_DEPLOYMENTS = {"models": [{"name": "chat", "deployments": [
    {"name": "a", "max_in_flight": 8, "base_latency_s": 0.2, "tokens_per_s": 0},
    {"name": "b", "max_in_flight": 8, "base_latency_s": 0.2, "tokens_per_s": 0}]}]}
STEADY = [{"name": "steady", "duration_s": 30, "rates": {"api": 10, "plus": 10, "free": 10}}]


def _summary(result):
    return {t: result.recorder.summary(i) for i, t in enumerate(result.tiers)}


def test_deterministic_for_a_seed(tiny_scenario):
    a = simulate(tiny_scenario, "seawall", seed=3)
    b = simulate(tiny_scenario, "seawall", seed=3)
    c = simulate(tiny_scenario, "seawall", seed=4)
    assert json.dumps(a.recorder.to_json()) == json.dumps(b.recorder.to_json())
    assert json.dumps(a.recorder.to_json()) != json.dumps(c.recorder.to_json())
    assert a.events == b.events


@pytest.mark.parametrize("profile", ["seawall", "naive"])
def test_every_request_ends_exactly_once_and_capacity_holds(tiny_scenario, profile):
    r = simulate(tiny_scenario, profile, replicas=3)
    for i, tier in enumerate(r.tiers):
        tr = r.recorder.tiers[i]
        if tier == INVALID_TIER:
            continue
        assert sum(tr.user_ok) + sum(tr.user_fail) == sum(tr.arrivals) > 0
        ended = sum(sum(v) for v in tr.outcomes.values())
        assert ended == sum(tr.offered)
    assert r.upstream["a"]["peak_in_flight"] <= 8
    assert r.requests == sum(sum(t.offered) for t in r.recorder.tiers)


def test_seawall_keeps_critical_traffic_alive_where_naive_does_not(tiny_scenario):
    seawall, naive = _summary(simulate(tiny_scenario, "seawall")), _summary(simulate(tiny_scenario, "naive"))
    assert seawall["api"]["success_rate_pct"] == 100.0
    assert naive["api"]["success_rate_pct"] < 80.0
    assert "upstream_429" in naive["api"]["reasons"]
    assert seawall["free"]["reasons"].get("overload", 0) > 0  # shed by the gateway itself, fast
    assert seawall["free"]["success_rate_pct"] < seawall["plus"]["success_rate_pct"]


def test_failover_and_breaker_when_a_deployment_goes_down():
    s = tiny(upstream=TWO_DEPLOYMENTS, phases=STEADY,
             events=[{"at_s": 10, "kind": "deployment_down", "deployment": "a"},
                     {"at_s": 20, "kind": "deployment_recover", "deployment": "a"}])
    r = simulate(s, "seawall")
    summary = _summary(r)
    assert summary["api"]["success_rate_pct"] >= 99.0  # failed attempts were retried on b
    assert r.recorder.gateway_requests and r.budget["retries"] > 0
    open_fraction = r.recorder.gauges["breaker_open_fraction.a"]
    bucket = r.recorder.bucket_s
    during = [v for i, v in enumerate(open_fraction) if v is not None and 11 < i * bucket < 19]
    assert max(during) == 1.0  # the breaker took the dead deployment out
    naive = _summary(simulate(s, "naive"))
    assert naive["api"]["success_rate_pct"] < 90.0  # one attempt, no failover


def test_slow_deployment_raises_latency_and_recovery_restores_it():
    s = tiny(phases=[{"name": "x", "duration_s": 30, "rates": {"api": 5}}],
             events=[{"at_s": 10, "kind": "deployment_slow", "deployment": "a", "factor": 3},
                     {"at_s": 20, "kind": "deployment_recover", "deployment": "a"}], slo={})
    r = simulate(s, "seawall")
    p99 = r.recorder.to_json()["tiers"]["api"]["series"]["p50_s"]
    bucket = r.recorder.bucket_s
    slow = [v for i, v in enumerate(p99) if v and 12 < i * bucket < 19]
    fast = [v for i, v in enumerate(p99) if v and (i * bucket < 9 or 22 < i * bucket < 29)]
    assert min(slow) > 0.55 and max(fast) < 0.25


def test_invalid_key_flood_is_refused_and_throttled_per_address(tiny_scenario):
    s = tiny(events=[{"at_s": 5, "kind": "invalid_key_flood", "per_s": 300, "duration_s": 10, "addresses": 3}])
    r = simulate(s, "seawall")
    reasons = r.recorder.summary(len(r.tiers) - 1)["reasons"]
    assert reasons["invalid_api_key"] == pytest.approx(3 * (20 + 2 * 10), abs=6)  # burst + per_s, per address
    assert reasons["auth_throttle"] > 2500
    base = _summary(simulate(tiny_scenario, "seawall"))
    assert _summary(r)["api"]["success_rate_pct"] == base["api"]["success_rate_pct"]


def test_capacity_added_after_cold_start():
    s = tiny(events=[{"at_s": 5, "kind": "capacity_added", "deployment": "a", "max_in_flight": 24,
                      "cold_start_s": 10}])
    r = simulate(s, "naive")
    assert r.upstream["a"]["capacity_final"] == 32
    caps = r.recorder.gauges["upstream_capacity.a"]
    bucket = r.recorder.bucket_s
    assert {v for i, v in enumerate(caps) if v is not None and i * bucket < 14.5} == {8.0}
    assert {v for i, v in enumerate(caps) if v is not None and 15.5 < i * bucket < 30} == {32.0}
    assert r.upstream["a"]["peak_in_flight"] > 8


def test_sdk_clients_retry_and_honour_retry_after(tiny_scenario):
    s = tiny(client={"retries": "sdk", "max_retries": 2, "timeout_s": 30})
    r = simulate(s, "naive")
    free = _summary(r)["free"]
    assert 1.5 < free["client_amplification"] <= 3.0
    none = _summary(simulate(tiny_scenario, "naive"))["free"]
    assert none["client_amplification"] == 1.0
    assert free["success_rate_pct"] > none["success_rate_pct"]  # the retries found capacity later


def test_impatient_users_abandon():
    s = tiny(upstream={"models": [{"name": "chat", "deployments": [
                 {"name": "a", "max_in_flight": 4, "base_latency_s": 3.0, "tokens_per_s": 0}]}]},
             client={"retries": "sdk", "max_retries": 5, "timeout_s": 60, "abandon_after_s": 2.0},
             phases=[{"name": "x", "duration_s": 10, "rates": {"api": 5}}], slo={})
    r = simulate(s, "naive")
    api = _summary(r)["api"]
    assert api["success_rate_pct"] == 0.0
    assert set(api["user_fail_reasons"]) <= {"abandoned"}
    assert r.upstream["a"]["peak_in_flight"] <= 4


def test_events_run_in_time_order_and_first_in_first_out_at_one_instant(tiny_scenario):
    sim = Simulation(tiny_scenario, gateway_config(tiny_scenario, "seawall"))
    seen: list[tuple[float, str]] = []

    def note(name, then):
        seen.append((sim.clock.t, name))
        for t, later in then:
            sim._push(t, note, later, ())

    sim._push(0.002, note, "c", ())
    sim._push(0.001, note, "a", [(0.001, "a2"), (0.0015, "b"), (0.001, "a3")])
    sim._push(0.001, note, "a1", [(0.001, "a4")])
    sim._push(0.002, note, "d", ())
    sim.run()
    assert seen == [(0.001, "a"), (0.001, "a1"), (0.001, "a2"), (0.001, "a3"), (0.001, "a4"), (0.0015, "b"),
                    (0.002, "c"), (0.002, "d")]


# -- shards ------------------------------------------------------------------------------------


def test_split_shares_rates_and_every_slot_exactly():
    s = tiny(upstream={"models": [{"name": "chat", "deployments": [
                 {"name": "a", "max_in_flight": 9, "base_latency_s": 0.2, "tokens_per_s": 0}]}]},
             events=[{"at_s": 5, "kind": "capacity_added", "deployment": "a", "max_in_flight": 7, "cold_start_s": 1},
                     {"at_s": 5, "kind": "invalid_key_flood", "per_s": 30, "duration_s": 5, "addresses": 3}])
    shares = s.split([2, 1, 2])
    assert [sh.upstream.models[0].deployments[0].max_in_flight for sh in shares] == [3, 2, 4]
    assert [sh.events[0].max_in_flight for sh in shares] == [2, 2, 3]
    assert [sh.events[1].per_s for sh in shares] == pytest.approx([12, 6, 12])
    assert sum(sh.expected_requests() for sh in shares) == pytest.approx(s.expected_requests())
    assert shares[1].phases[1].rates["free"].end_per_s == pytest.approx(240 / 5)
    with pytest.raises(ValueError, match=r"upstream.models\[0\].deployments\[0\].max_in_flight: 9 slots cannot"):
        s.split([1] * 10)


def test_shards_are_deterministic_whatever_the_processes(tiny_scenario):
    one = simulate(tiny_scenario, "seawall", replicas=4, seed=3, shards=2, processes=1)
    two = simulate(tiny_scenario, "seawall", replicas=4, seed=3, shards=2, processes=2)  # child processes
    assert json.dumps(one.recorder.to_json()) == json.dumps(two.recorder.to_json())
    assert (one.requests, one.events, one.upstream, one.budget) == (two.requests, two.events, two.upstream, two.budget)
    assert two.shards == 2 and two.replicas == 4
    whole = simulate(tiny_scenario, "seawall", replicas=4, seed=3)
    assert json.dumps(whole.recorder.to_json()) != json.dumps(two.recorder.to_json())


@pytest.mark.parametrize("profile", ["seawall", "naive"])
def test_shards_add_up_to_one_run(tiny_scenario, profile):
    r = simulate(tiny_scenario, profile, replicas=4, shards=2, processes=1)
    for i, tier in enumerate(r.tiers):
        tr = r.recorder.tiers[i]
        if tier == INVALID_TIER:
            continue
        assert sum(tr.user_ok) + sum(tr.user_fail) == sum(tr.arrivals) > 0
        assert sum(sum(v) for v in tr.outcomes.values()) == sum(tr.offered)
        assert tr.latency.n == sum(tr.user_ok) == sum(c.n for c in tr.coarse)
    assert r.requests == sum(sum(t.offered) for t in r.recorder.tiers)
    assert r.upstream["a"]["capacity_final"] == 8
    caps = {v for v in r.recorder.gauges["upstream_capacity.a"] if v is not None}
    assert caps == {8.0}  # the shards' shares add up to the deployment, to the last bucket
    budget = r.budget
    assert budget["amplification"] == pytest.approx((budget["requests"] + budget["retries"]) / budget["requests"])


def test_shards_tell_the_same_story_as_one_run(tiny_scenario):
    """Four replicas in two shards of two: each shard gets half the traffic and half of every
    upstream's slots; what that changes (slots no longer pooled) stays within a few points here."""
    s = tiny(upstream=TWO_DEPLOYMENTS)
    whole, sharded = _summary(simulate(s, "seawall", replicas=4)), _summary(simulate(s, "seawall", replicas=4,
                                                                                      shards=2, processes=1))
    # api (clients that never retry) is held within one plan of sends per request: a request whose
    # every send met full slots fails, so not always 100%
    assert sharded["api"]["success_rate_pct"] >= 99.0 and whole["api"]["success_rate_pct"] >= 99.0
    assert abs(sharded["api"]["success_rate_pct"] - whole["api"]["success_rate_pct"]) < 1.0
    for tier in ("plus", "free"):  # the free tier, shed hardest, moves most (a few hundred requests here)
        assert abs(sharded[tier]["success_rate_pct"] - whole[tier]["success_rate_pct"]) < 7.5
        assert sharded[tier]["requests"] == pytest.approx(whole[tier]["requests"], rel=0.05)


def test_shards_need_a_replica_and_a_slot_each(tiny_scenario):
    with pytest.raises(ValueError, match="shards must be between 1 and the number of replicas"):
        simulate(tiny_scenario, "seawall", replicas=2, shards=3)
    with pytest.raises(ValueError, match="8 slots cannot be split into 9 shares"):
        simulate(tiny_scenario, "seawall", replicas=9, shards=9)


def test_a_first_token_timeout_fails_streams_over_in_the_simulator_too():
    """ttft_timeout_s was once never applied in the simulator (issue 11): a deployment whose first
    token takes 2 s, with a 0.5 s first-token timeout, loses every stream to the fast one."""
    slow_first_token = {"models": [{"name": "chat", "deployments": [
        {"name": "a", "max_in_flight": 64, "base_latency_s": 2.0, "tokens_per_s": 0, "ttft_timeout_s": 0.5,
         "priority": 0},
        {"name": "b", "max_in_flight": 64, "base_latency_s": 0.2, "tokens_per_s": 0, "priority": 1}]}]}
    shape = {"prompt_tokens": 50, "max_tokens": 32, "completion_tokens": 8, "stream_fraction": 1.0}
    phases = [{"name": "steady", "duration_s": 20, "rates": {"api": 5, "plus": 0, "free": 0}}]
    r = simulate(tiny(upstream=slow_first_token, phases=phases, shape=shape), "seawall")
    api = _summary(r)["api"]
    assert api["success_rate_pct"] == 100.0
    assert api["p99_s"] < 2.0  # none waited for a's 2 s first token
    without = {"models": [{"name": "chat", "deployments": [
        {**slow_first_token["models"][0]["deployments"][0], "ttft_timeout_s": None},
        slow_first_token["models"][0]["deployments"][1]]}]}
    slow = _summary(simulate(tiny(upstream=without, phases=phases, shape=shape), "seawall"))["api"]
    assert slow["p50_s"] >= 2.0  # without the timeout the primary answers, late
