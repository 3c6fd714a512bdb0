import json
import re

from seawall.surge.report import results_json, run_json, write_report
from seawall.surge.sim import simulate


def _runs(scenario):
    out = []
    for profile in ("seawall", "naive"):
        r = simulate(scenario, profile)
        out.append(run_json(scenario, r.recorder, mode="sim", profile=profile, meta={"replicas": r.replicas}))
    return out


def test_results_json_has_what_the_issue_asks_for(tiny_scenario):
    results = results_json(tiny_scenario, _runs(tiny_scenario))
    json.dumps(results, allow_nan=False)
    seawall, naive = results["runs"]
    for run in (seawall, naive):
        api = run["tiers"]["api"]
        assert {"offered", "admitted", "ok", "p99_s"} <= set(api["series"])  # over time
        assert {"success_rate_pct", "p50_s", "p99_s", "reasons"} <= set(api["summary"])
        assert run["amplification"]["client"] == 1.0
        assert "recovery_s" in run and "verdicts" in run
    assert seawall["verdicts"] == [{"tier": "api", "objective": "success_rate_pct", "target": 99.0,
                                    "value": 100.0, "pass": True}]
    assert naive["verdicts"][0]["pass"] is False
    assert seawall["slo_met"] is True and naive["slo_met"] is False
    assert any(k.startswith("limit_units.chat") for k in seawall["gauges"])
    assert not any(k.startswith("limit_units.") for k in naive["gauges"])  # admission off: no limit
    assert sum(sum(v) for v in seawall["reasons"].values()) > 0


def test_html_is_self_contained_and_has_every_plot(tmp_path, tiny_scenario):
    path = write_report(tmp_path, tiny_scenario, _runs(tiny_scenario))
    html = path.read_text()
    results = json.loads((tmp_path / "results.json").read_text())
    ids = re.findall(r'<svg class="plot" data-plot="([^"]+)"', html)
    assert sorted(ids) == sorted(results["plots"])
    assert len(ids) == 2 * 3 + 2 * (3 + 6)  # side by side per tier; per run: traffic per tier + 6
    assert "<script" not in html
    assert not re.search(r'(src|href)="(https?:)?//', html)  # nothing fetched from outside
    assert "PASS" in html and "FAIL" in html
