import textwrap

import pytest

from seawall.config import ConfigError, load_config, parse_config
from seawall.core.types import Criticality


def test_embedded_default_is_valid():
    config = load_config(None)
    assert [m.name for m in config.models] == ["sim-small", "sim-embed", "sim-moderation"]
    assert config.criticality_of("enterprise") is Criticality.CRITICAL_PLUS
    assert config.server.max_body_bytes == 4 * 1024 * 1024


def test_every_error_is_reported_with_its_path(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(textwrap.dedent("""
        server: {port: 99999, surprise: 1}
        tenants: [{name: acme, tier: gold}]
        models:
          - name: a
            deployments: [{base_url: "http://ok"}]
          - name: b
            deployments: []
          - name: c
            deployments:
              - {base_url: "ftp//nope", timeouts: {connect_s: -1}}
    """))
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    problems = exc.value.problems
    text = "\n".join(problems)
    assert "server.port:" in text
    assert "server.surprise: unknown field" in text
    assert "models[1].deployments:" in text
    assert "models[2].deployments[0].base_url: not a URL" in text
    assert "models[2].deployments[0].timeouts.connect_s:" in text
    assert len(problems) >= 5


def test_cross_reference_errors():
    with pytest.raises(ConfigError) as exc:
        parse_config({"tenants": [{"name": "t", "tier": "gold"}],
                      "models": [{"name": "a", "deployments": [{"provider": "mock"}]},
                                 {"name": "a", "deployments": [{"provider": "mock"}]}]})
    text = "\n".join(exc.value.problems)
    assert "tenants[0].tier: unknown tier 'gold'" in text
    assert "models[1].name: duplicate model 'a'" in text


def test_yaml_syntax_error_names_line(tmp_path):
    path = tmp_path / "x.yaml"
    path.write_text("models: [\n  {name: a\n")
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    assert "not valid YAML at line" in exc.value.problems[0]


def test_missing_file_and_non_mapping(tmp_path):
    with pytest.raises(ConfigError):
        load_config(tmp_path / "absent.yaml")
    with pytest.raises(ConfigError) as exc:
        parse_config([1, 2])
    assert exc.value.problems == ["(top level): expected a mapping"]


def test_mock_settings_are_validated():
    with pytest.raises(ConfigError) as exc:
        parse_config({"models": [{"name": "a", "deployments": [{"provider": "mock",
                                                                 "mock": {"error_rate": 7}}]}]})
    assert "models[0].deployments[0].mock" in exc.value.problems[0]


def test_shipped_example_config_is_valid():
    from pathlib import Path

    example = Path(__file__).resolve().parents[3] / "docs" / "config.example.yaml"
    config = load_config(example)
    assert {m.name for m in config.models} >= {"sim-small", "gpt-4o-mini"}


def test_admission_limit_knobs_reach_the_limit_and_are_checked():
    from seawall.config.registry import make_limit

    models = [{"name": "a", "deployments": [{"provider": "mock"}]}]
    limit = make_limit(parse_config({"models": models}).admission)
    assert (limit.tolerance, limit.min_queue_requests) == (1.2, 2.0)
    tuned = parse_config({"models": models, "admission": {"latency_tolerance": 1.5, "min_queue_requests": 0}})
    limit = make_limit(tuned.admission)
    assert (limit.tolerance, limit.min_queue_requests) == (1.5, 0.0)
    with pytest.raises(ConfigError) as exc:
        parse_config({"models": models, "admission": {"latency_tolerance": 0.9, "min_queue_requests": -1}})
    text = "\n".join(exc.value.problems)
    assert "admission.latency_tolerance:" in text and "admission.min_queue_requests:" in text
