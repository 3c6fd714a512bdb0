"""The surge lab's commands, in process: sim and plan end to end, argument checks for run."""

import json

import pytest
import yaml

from seawall.cli import main
from tests.unit.surge.conftest import TINY


@pytest.fixture
def tiny_file(tmp_path):
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(TINY))
    return path


def test_sim_side_by_side_writes_a_report(tmp_path, tiny_file, capsys):
    out = tmp_path / "report"
    assert main(["surge", "sim", str(tiny_file), "--compare", "naive", "--replicas", "2", "--seed", "5",
                 "--out", str(out), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert [r["label"] for r in printed] == ["seawall (sim)", "naive (sim)"]
    results = json.loads((out / "results.json").read_text())
    assert results["runs"][0]["meta"]["replicas"] == 2 and results["runs"][0]["meta"]["seed"] == 5
    assert (out / "report.html").read_text().count('class="plot"') == len(results["plots"])


def test_sim_scales_a_shipped_scenario(tmp_path, capsys):
    assert main(["surge", "sim", "scandal-surge", "--time-scale", "0.02", "--load-scale", "0.05",
                 "--replicas", "1", "--out", str(tmp_path), "--json"]) == 0
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["scenario"]["duration_s"] == pytest.approx(66.0)
    assert results["runs"][0]["summary"]["api"]["requests"] > 0


def test_sim_in_shards(tmp_path, tiny_file, capsys):
    assert main(["surge", "sim", str(tiny_file), "--replicas", "4", "--shards", "2", "--processes", "2",
                 "--out", str(tmp_path), "--json"]) == 0
    captured = capsys.readouterr()
    assert "over 4 replicas in 2 shards" in captured.err
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["runs"][0]["meta"]["shards"] == 2
    assert results["runs"][0]["summary"]["api"]["requests"] > 0
    assert main(["surge", "sim", str(tiny_file), "--replicas", "2", "--shards", "3", "--out", str(tmp_path)]) == 2
    assert "shards must be between 1 and the number of replicas (2)" in capsys.readouterr().err


def test_invalid_scenarios_list_every_problem(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({**TINY, "phases": [{"name": "x", "duration_s": 0, "rates": {"ghost": 1}}]}))
    with pytest.raises(SystemExit) as exc:
        main(["surge", "sim", str(bad)])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "phases[0].duration_s" in err


def test_run_refuses_remote_targets_and_needs_keys(tiny_file, capsys):
    assert main(["surge", "run", str(tiny_file), "--target", "http://203.0.113.7:8080", "--keys", "k"]) == 2
    assert "--allow-remote" in capsys.readouterr().err
    assert main(["surge", "run", str(tiny_file), "--target", "http://127.0.0.1:9"]) == 2
    assert "--keys" in capsys.readouterr().err
    assert main(["surge", "run", str(tiny_file)]) == 2


def test_plan_prints_the_answer(tiny_file, capsys):
    assert main(["surge", "plan", str(tiny_file), "--slo", "sheddable_plus=90", "--profile", "naive",
                 "--hi", "8", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["answer"] is not None and result["total_capacity"] > 8


def test_list_shows_the_shipped_scenarios(capsys):
    assert main(["surge", "list"]) == 0
    out = capsys.readouterr().out
    for name in ("scandal-surge", "provider-outage", "retry-storm", "diurnal-day"):
        assert name in out
