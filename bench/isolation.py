"""When paying traffic alone fits, a consumer flood must not change its fate.

For every shipped scenario, the simulator runs it twice under seawall's defaults: as written, and
with the consumer tiers (every tier below ``critical``) removed from the traffic, so only the paying
tiers, the attacks (invalid-key floods) and the upstream's events are left. The paying tiers'
success in the two runs is compared side by side; issue 11 asks for at most 0.3 points between
them. Both runs use the scenario's seed and replicas; they run two at a time, each in its own
process.

    python bench/isolation.py [--scenario NAME ...] [--seed N]
"""

from __future__ import annotations

import argparse
import copy
import multiprocessing
import sys
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _lab import table, write_results
from seawall.config.schema import Config
from seawall.core.types import Criticality
from seawall.surge.scenario import parse_scenario, shipped_scenarios
from seawall.surge.sim import simulate

MAX_GAP_POINTS = 0.3


def paying_tiers(data: dict[str, Any]) -> list[str]:
    config = Config(models=[{"name": "x", "deployments": [{"name": "x", "provider": "mock"}]}])
    return [t for t in data["tiers"] if config.criticality_of(t) >= Criticality.CRITICAL]


def without_consumers(data: dict[str, Any]) -> dict[str, Any]:
    """The scenario with only its paying tiers' traffic."""
    keep = set(paying_tiers(data))
    out = copy.deepcopy(data)
    out["name"] = f"{data['name']}-paying-only"
    out["tiers"] = {t: v for t, v in data["tiers"].items() if t in keep}
    for phase in out["phases"]:
        phase["rates"] = {t: v for t, v in phase["rates"].items() if t in keep}
    if "slo" in out:
        out["slo"] = {t: v for t, v in out["slo"].items() if t in keep}
    return out


def run(job: tuple[str, dict[str, Any], int | None]) -> tuple[str, dict[str, float]]:
    label, data, seed = job
    result = simulate(parse_scenario(data), "seawall", seed=seed)
    rec = result.recorder
    return label, {name: rec.summary(i)["success_rate_pct"] for i, name in enumerate(rec.tier_names)
                   if rec.summary(i)["success_rate_pct"] is not None}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", action="append", help="a shipped scenario (default: all)")
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args()
    shipped = shipped_scenarios()
    names = args.scenario or sorted(shipped)
    jobs = []
    for name in names:
        data = yaml.safe_load(shipped[name])
        jobs.append((f"{name}|full", data, args.seed))
        jobs.append((f"{name}|paying", without_consumers(data), args.seed))
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        results = dict(pool.map(run, jobs))
    rows = []
    worst = 0.0
    for name in names:
        data = yaml.safe_load(shipped[name])
        full, alone = results[f"{name}|full"], results[f"{name}|paying"]
        for tier in paying_tiers(data):
            gap = alone[tier] - full[tier]
            worst = max(worst, gap)
            rows.append([name, tier, f"{full[tier]:.2f}%", f"{alone[tier]:.2f}%", f"{gap:+.2f}",
                         "yes" if gap <= MAX_GAP_POINTS else "NO"])
    out = table(["scenario", "tier", "success, full surge", "success, paying only",
                 "points lost to the flood", f"within {MAX_GAP_POINTS}"], rows)
    print(out)
    note = (f"\nWorst gap: {worst:+.2f} points (target <= {MAX_GAP_POINTS}). Simulated at each scenario's own "
            "scale and seed, seawall defaults.")
    print(note)
    write_results("isolation", "Paying traffic with and without the consumer flood (simulated)", out + "\n" + note,
                  sys.argv)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
