"""``seawall surge run --spawn --simulate`` end to end, and its report opened in headless Chromium:
every plot listed in results.json is in the rendered page. About 20 s."""

import json
import os
import re
import shutil
import subprocess
import sys

import pytest
import yaml

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

SCENARIO = {
    "name": "quick",
    "seed": 2,
    "upstream": {"models": [{"name": "chat", "deployments": [
        {"name": "a", "max_in_flight": 4, "base_latency_s": 0.1, "tokens_per_s": 0},
        {"name": "b", "max_in_flight": 4, "base_latency_s": 0.1, "tokens_per_s": 0}]}]},
    "shape": {"prompt_tokens": 60, "max_tokens": 16, "completion_tokens": 4, "stream_fraction": 0.5},
    "client": {"retries": "sdk", "max_retries": 1, "timeout_s": 10},
    "tiers": {"api": {}, "free": {}},
    "phases": [{"name": "calm", "duration_s": 2, "rates": {"api": 5, "free": 10}},
               {"name": "surge", "duration_s": 3, "rates": {"api": 5, "free": 120}}],
    "events": [{"at_s": 1, "kind": "invalid_key_flood", "per_s": 50, "duration_s": 3, "addresses": 3},
               {"at_s": 2, "kind": "deployment_slow", "deployment": "a", "factor": 2}],
    "slo": {"api": {"success_rate_pct": 99}},
}


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    if shutil.which("apt-get") and hasattr(os, "geteuid") and os.geteuid() == 0:
        print("chromium missing: trying apt-get install chromium")
        subprocess.run(["apt-get", "install", "-y", "-qq", "chromium"], capture_output=True, timeout=900,
                       env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"}, check=False)
        return shutil.which("chromium")
    return None


def test_live_replay_report_renders_every_plot(tmp_path):
    scenario = tmp_path / "quick.yaml"
    scenario.write_text(yaml.safe_dump(SCENARIO))
    out = tmp_path / "report"
    run = subprocess.run([sys.executable, "-m", "seawall", "surge", "run", str(scenario), "--spawn", "--compare",
                          "naive", "--simulate", "--out", str(out), "--no-progress", "--json",
                          "--max-duration-s", "30"], capture_output=True, text=True, timeout=180,
                         stdin=subprocess.DEVNULL)
    assert run.returncode == 0, run.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    assert [r["label"] for r in results["runs"]] == ["seawall (live)", "naive (live)", "seawall (sim)",
                                                     "naive (sim)"]
    live = results["runs"][0]
    assert live["summary"]["api"]["requests"] > 10
    assert sum(live["tiers"]["(invalid keys)"]["series"]["rejected_auth"]) > 50  # the flood hit auth
    assert any(k.startswith("limit_units.chat") for k in live["gauges"])  # read from /admin/admission
    assert any(k.startswith("upstream_in_flight.") for k in live["gauges"])  # read from /mock/stats

    chromium = _chromium()
    if chromium is None:
        pytest.skip("chromium is not installed and could not be installed (apt-get unavailable or not root)")
    profile = tmp_path / "chromium-profile"
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", f"--user-data-dir={profile}"]
    url = (out / "report.html").as_uri()
    dom = subprocess.run([chromium, *flags, "--dump-dom", url], capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    rendered = re.findall(r'<svg class="plot" data-plot="([^"]+)"', dom.stdout)
    assert sorted(rendered) == sorted(results["plots"])
    for plot_id in results["plots"]:
        svg = dom.stdout.split(f'data-plot="{plot_id}"', 1)[1].split("</svg>", 1)[0]
        assert "<polyline" in svg or "no data" in svg or "admission off" in svg or "nothing refused" in svg
    shot = tmp_path / "report.png"
    subprocess.run([chromium, *flags, "--window-size=1200,3000", f"--screenshot={shot}", url],
                   capture_output=True, timeout=120, check=True)
    assert shot.stat().st_size > 50_000  # a page of charts, not a blank one
