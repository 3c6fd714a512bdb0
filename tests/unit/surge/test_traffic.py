import math

import pytest

from seawall.providers.openai import estimate_tokens, parse_chat
from seawall.surge.live import _body
from seawall.surge.traffic import FloodArrivals, tier_sources
from tests.unit.surge.conftest import tiny


def _arrivals(scenario, seed):
    out = {}
    for src in tier_sources(scenario, seed):
        times = []
        while (t := src.arrivals.next()) < math.inf:
            times.append(t)
        out[src.tier] = times
    return out


def test_same_seed_same_traffic_different_seed_different_traffic(tiny_scenario):
    a, b, c = _arrivals(tiny_scenario, 1), _arrivals(tiny_scenario, 1), _arrivals(tiny_scenario, 2)
    assert a == b
    assert a != c
    sources = (tier_sources(tiny_scenario, 1)[0], tier_sources(tiny_scenario, 1)[0])
    shapes = [[s.draw() for _ in range(50)] for s in sources]
    assert shapes[0] == shapes[1]


def test_adding_a_tier_does_not_change_the_others_traffic():
    base = _arrivals(tiny(), 4)
    more = tiny(tiers={"api": {}, "plus": {}, "free": {}, "enterprise": {}},
                phases=[{**p, "rates": {**p["rates"], "enterprise": 3}} for p in tiny().model_dump()["phases"]])
    assert _arrivals(more, 4)["api"] == base["api"]


def test_arrival_counts_follow_the_rate_curve():
    s = tiny(phases=[{"name": "ramp", "duration_s": 200,
                      "rates": {"api": {"kind": "linear", "start_per_s": 0, "end_per_s": 100}}}])
    times = _arrivals(s, 9)["api"]
    assert len(times) == pytest.approx(s.expected_requests(), rel=0.03)  # 10,000 expected; sd 1%
    first_half = sum(1 for t in times if t < 100)
    assert first_half / len(times) == pytest.approx(0.25, abs=0.02)  # integral of a ramp
    assert times == sorted(times) and 0 <= times[0] and times[-1] < 200


def test_request_shapes_follow_their_distributions():
    s = tiny(shape={"prompt_tokens": {"kind": "lognormal", "median": 400, "p99": 4000},
                    "max_tokens": {"kind": "choice", "values": [100, 200], "weights": [1, 3]},
                    "completion_tokens": {"kind": "uniform", "low": 10, "high": 20},
                    "stream_fraction": 0.25})
    src = tier_sources(s, 3)[0]
    draws = [src.draw() for _ in range(20_000)]
    prompts = sorted(d[0] for d in draws)
    assert prompts[len(prompts) // 2] == pytest.approx(400, rel=0.05)
    assert prompts[int(0.99 * len(prompts))] == pytest.approx(4000, rel=0.1)
    assert sum(d[1] == 200 for d in draws) / len(draws) == pytest.approx(0.75, abs=0.02)
    assert all(10 <= d[2] <= 20 for d in draws)
    assert sum(d[3] for d in draws) / len(draws) == pytest.approx(0.25, abs=0.02)


@pytest.mark.parametrize("prompt", [40, 41, 300, 5000])
def test_live_bodies_weigh_what_the_simulator_counts(prompt):
    body = _body(prompt, 64, 12, True, "chat")
    assert estimate_tokens(body) == prompt  # the gateway's own estimate: len(body) // 4
    payload = parse_chat(body)
    assert (payload.max_tokens, payload.stream, payload.body["mock"]) == (64, True, {"completion_tokens": 12})


def test_floods_arrive_at_their_rate_from_their_addresses():
    s = tiny(events=[{"at_s": 5, "kind": "invalid_key_flood", "per_s": 200, "duration_s": 10, "addresses": 7}])
    import random

    floods = FloodArrivals(s, random.Random(1))
    got = []
    while (n := floods.next()) is not None:
        got.append(n)
    assert len(got) == pytest.approx(2000, rel=0.08)
    assert all(5 <= t < 15 for t, _ in got)
    assert {a for _, a in got} == set(range(7))
