"""OpenSLO v1 and Prometheus rules come from the configured objectives and alert rules."""

from __future__ import annotations

import yaml

from seawall.config.schema import Config
from seawall.slo.export import components, objectives, openslo_yaml, prometheus_rules_yaml


def config() -> Config:
    return Config.model_validate({
        "models": [{"name": "chat", "deployments": [{"name": "a", "provider": "mock"},
                                                    {"name": "b", "provider": "mock"}]}],
        "slo": {"tiers": {"enterprise": {"availability": 0.9999, "window_days": 30}},
                "alerts": [{"severity": "page", "burn_rate": 14.4, "long_window_s": 3600, "short_window_s": 300},
                           {"severity": "ticket", "burn_rate": 1, "long_window_s": 259200,
                            "short_window_s": 21600}]},
    })


def test_objectives_default_by_criticality_and_components_follow_the_models():
    objs = objectives(config())
    assert objs["enterprise"].availability == 0.9999 and objs["enterprise"].window_days == 30
    assert objs["api"].availability == 0.999 and objs["free"].shed_counts is False
    assert components(config()) == ["front_door", "auth", "group:chat", "deployment:a", "deployment:b"]


def test_openslo_documents():
    docs = list(yaml.safe_load_all(openslo_yaml(config())))
    assert all(d["apiVersion"] == "openslo/v1" for d in docs)
    kinds = [d["kind"] for d in docs]
    assert kinds.count("Service") == 1 and kinds.count("AlertCondition") == 2 and kinds.count("AlertPolicy") == 2
    slos = [d for d in docs if d["kind"] == "SLO"]
    assert len(slos) == 4 * 5 * 2  # tiers x components x SLIs
    names = [d["metadata"]["name"] for d in docs]
    assert len(set(names)) == len(names) and all(len(n) <= 63 for n in names)
    slo = next(d for d in slos if d["metadata"]["name"] == "enterprise-availability-deployment-a")
    spec = slo["spec"]
    assert spec["objectives"] == [{"displayName": "availability", "target": 0.9999}]
    assert spec["timeWindow"] == [{"duration": "30d", "isRolling": True}]
    assert spec["budgetingMethod"] == "Occurrences" and spec["service"] == "seawall"
    ratio = spec["indicator"]["spec"]["ratioMetric"]
    assert ratio["counter"] is True
    assert 'component="deployment:a",tier="enterprise",sli="availability",outcome="good"' in \
        ratio["good"]["metricSource"]["spec"]["query"]
    page = next(d for d in docs if d["kind"] == "AlertCondition" and d["spec"]["severity"] == "page")
    assert page["spec"]["condition"] == {"kind": "burnrate", "op": "gte", "threshold": 14.4,
                                         "lookbackWindow": "1h", "alertAfter": "5m"}


def test_prometheus_rules_use_the_same_windows_and_thresholds():
    doc = yaml.safe_load(prometheus_rules_yaml(config()))
    recording, alerts = doc["groups"]
    assert [r["record"] for r in recording["rules"]] == [
        "seawall:slo_error_ratio:rate5m", "seawall:slo_error_ratio:rate1h", "seawall:slo_error_ratio:rate6h",
        "seawall:slo_error_ratio:rate3d"]
    page = next(r for r in alerts["rules"] if r["labels"] == {"severity": "page", "tier": "enterprise",
                                                                "sli": "availability"})
    # 14.4 x (1 - 0.9999) = 0.00144, over both windows
    assert page["expr"] == ('(seawall:slo_error_ratio:rate1h{tier="enterprise",sli="availability"} > 0.00144 and '
                            'seawall:slo_error_ratio:rate5m{tier="enterprise",sli="availability"} > 0.00144)')
    assert len(alerts["rules"]) == 4 * 2 * 2  # tiers x SLIs x severities


def test_an_unknown_tier_in_slo_tiers_is_a_config_error():
    import pytest
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match=r"slo\.tiers\.gold: unknown tier"):
        Config.model_validate({"models": [{"name": "m", "deployments": [{"provider": "mock"}]}],
                               "slo": {"tiers": {"gold": {}}}})


def test_the_cli_writes_both_files(tmp_path, capsys):
    from seawall.cli import main

    path = tmp_path / "c.yaml"
    path.write_text("models: [{name: chat, deployments: [{name: a, provider: mock}]}]\n")
    assert main(["slo", "rules", "-c", str(path)]) == 0
    assert yaml.safe_load(capsys.readouterr().out)["groups"][1]["name"] == "seawall-slo-alerts"
    out = tmp_path / "openslo.yaml"
    assert main(["slo", "export", "-c", str(path), "-o", str(out)]) == 0
    assert sum(1 for d in yaml.safe_load_all(out.read_text()) if d["kind"] == "SLO") == 4 * 4 * 2
