import math

import pytest
import yaml

from seawall.surge.scenario import ScenarioError, load_scenario, parse_scenario, shipped_scenarios
from tests.unit.surge.conftest import TINY, tiny


def test_every_shipped_scenario_is_valid_and_documented():
    shipped = shipped_scenarios()
    assert {"scandal-surge", "provider-outage", "retry-storm", "diurnal-day"} <= set(shipped)
    from pathlib import Path

    docs = (Path(__file__).resolve().parents[3] / "docs" / "scenarios.md").read_text()
    for name, text in shipped.items():
        scenario = parse_scenario(yaml.safe_load(text))
        assert scenario.name == name
        assert scenario.description
        assert f"`{name}`" in docs


def test_scandal_surge_is_what_the_issue_says():
    s = load_scenario("scandal-surge")
    starts = dict(zip([p.name for p in s.phases], s.phase_starts(), strict=True))
    ramp = next(p for p in s.phases if p.name == "news breaks")
    for tier in ("plus", "free"):
        before = s.phases[0].rates[tier].at(0, s.phases[0].duration_s)
        after = ramp.rates[tier].at(ramp.duration_s, ramp.duration_s)
        assert after == pytest.approx(12 * before)
    assert ramp.duration_s <= 20 * 60
    for tier in ("api", "enterprise"):
        assert {p.rates[tier].at(0, p.duration_s) for p in s.phases} == {s.phases[0].rates[tier].at(0, 1)}
    kinds = {e.kind for e in s.events}
    assert {"invalid_key_flood", "deployment_slow"} <= kinds
    slow = next(e for e in s.events if e.kind == "deployment_slow")
    assert starts["news breaks"] < slow.at_s < starts["subsiding"]  # mid-surge


def test_errors_name_their_path_all_in_one_pass():
    data = dict(TINY)
    data["phases"] = [
        {"name": "a", "duration_s": -1, "rates": {"api": {"kind": "linear", "start_per_s": 1, "end_per_s": -2}}},
        {"name": "b", "duration_s": 5, "rates": {"nobody": 3}},
    ]
    data["shape"] = {"prompt_tokens": {"kind": "uniform", "low": 9, "high": 3}, "stream_fraction": 2}
    data["events"] = [{"at_s": 1, "kind": "deployment_down", "deployment": "zzz"},
                      {"at_s": 1, "kind": "meteor"}]
    data["surprise"] = True
    with pytest.raises(ScenarioError) as exc:
        parse_scenario(data)
    problems = "\n".join(exc.value.problems)
    assert "phases[0].duration_s: Input should be greater than 0" in problems
    assert "phases[0].rates.api.end_per_s: Input should be greater than or equal to 0" in problems
    assert "shape.prompt_tokens: high must be >= low" in problems
    assert "shape.stream_fraction: Input should be less than or equal to 1" in problems
    assert "events[1]" in problems and "meteor" in problems
    assert "surprise: unknown field" in problems
    assert len(exc.value.problems) >= 6


def test_cross_references_are_checked_with_paths():
    with pytest.raises(ScenarioError) as exc:
        tiny(phases=[{"name": "p", "duration_s": 5, "rates": {"nobody": 3}}],
             events=[{"at_s": 1, "kind": "deployment_down", "deployment": "zzz"}],
             slo={"ghost": {"success_rate_pct": 50}})
    assert set(exc.value.problems) >= {
        "phases[0].rates.nobody: unknown tier (declare it under tiers)",
        "events[0].deployment: unknown deployment 'zzz'",
        "slo.ghost: unknown tier",
    }


def test_yaml_errors_and_missing_files_are_reported(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(ScenarioError, match="not valid YAML at line"):
        load_scenario(bad)
    with pytest.raises(ScenarioError, match=r"shipped scenarios: .*scandal-surge"):
        load_scenario(tmp_path / "nope.yaml")


@pytest.mark.parametrize(("rate", "t", "expected"), [
    ({"kind": "constant", "per_s": 5}, 3, 5),
    ({"kind": "linear", "start_per_s": 10, "end_per_s": 30}, 5, 20),
    ({"kind": "exponential", "start_per_s": 10, "end_per_s": 1000}, 5, 100),
    ({"kind": "spike", "base_per_s": 10, "peak_per_s": 110, "peak_at_s": 5, "decay_s": 2}, 7, 10 + 100 * math.exp(-1)),
    ({"kind": "diurnal", "mean_per_s": 10, "amplitude": 0.5, "period_s": 20, "peak_at_s": 5}, 5, 15),
    ({"kind": "diurnal", "mean_per_s": 10, "amplitude": 0.5, "period_s": 20, "peak_at_s": 5}, 15, 5),
])
def test_rate_curves(rate, t, expected):
    s = tiny(phases=[{"name": "p", "duration_s": 10, "rates": {"api": rate}}])
    r = s.phases[0].rates["api"]
    assert r.at(t, 10) == pytest.approx(expected)
    assert r.peak(0, 10, 10) >= max(r.at(x / 10, 10) for x in range(101)) - 1e-9


def test_scaled_compresses_time_and_load_together():
    s = load_scenario("scandal-surge")
    small = s.scaled(time_scale=0.1, load_scale=0.5)
    assert small.duration_s == pytest.approx(0.1 * s.duration_s)
    assert small.expected_requests() == pytest.approx(0.05 * s.expected_requests(), rel=0.01)
    assert [d.max_in_flight for _, d in small.deployments()] == [48, 32]
    flood = next(e for e in small.events if e.kind == "invalid_key_flood")
    assert (flood.at_s, flood.per_s, flood.duration_s) == (90, 200, 60)
    assert small.client_of("free").timeout_s == s.client_of("free").timeout_s  # physics is not scaled
    assert small.recovery_start_s() == pytest.approx(0.1 * s.recovery_start_s())
