"""The simulator tells the truth: one small surge, replayed live on loopback (mock upstream, a real
gateway process, real HTTP) and simulated, gives the same per-tier success rates (within 2
percentage points) and p99 latencies (within 25%), on each upstream behaviour (fixed slots,
continuous batching, a hosted provider: the mock and the simulator run the same model). About 45 s
each.

A live run on a shared two-core machine is a noisy measurement: when other work takes the CPU,
the gateway's latency jitters beyond Gradient2's 5% tolerance and its limit settles lower (see
docs/decisions.md). So a run that misses the bounds is repeated, up to three live runs (each is printed); the
simulation itself is deterministic and is not rerun."""

from pathlib import Path

import pytest

from seawall.surge.live import replay, spawn_stack
from seawall.surge.scenario import load_scenario
from seawall.surge.sim import simulate

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

SCENARIOS = ["surge_faithful.yaml", "surge_faithful_batching.yaml", "surge_faithful_hosted.yaml"]


def _misses(rows: list[tuple[str, float, float, float, float]]) -> list[str]:
    out = []
    for tier, a_ok, b_ok, a_p99, b_p99 in rows:
        if abs(a_ok - b_ok) > 2.0:
            out.append(f"{tier}: success {a_ok:.2f}% live vs {b_ok:.2f}% simulated")
        if abs(a_p99 - b_p99) > 0.25 * a_p99:
            out.append(f"{tier}: p99 {a_p99:.3f}s live vs {b_p99:.3f}s simulated")
    return out


@pytest.mark.parametrize("name", SCENARIOS)
def test_live_and_simulated_agree(tmp_path, name):
    scenario = load_scenario(Path(__file__).with_name(name))
    sim = simulate(scenario, "seawall", replicas=1)
    misses: list[str] = []
    for attempt in (1, 2, 3):
        with spawn_stack(scenario, "seawall", workdir=tmp_path / f"run{attempt}") as stack:
            live = replay(scenario, stack.target, max_duration_s=scenario.duration_s + 25)
        assert live.stopped_early is None
        rows = []
        for i, tier in enumerate(scenario.tiers):
            a, b = live.recorder.summary(i), sim.recorder.summary(i)
            assert a["requests"] == b["requests"] > 200  # the same arrivals, by construction
            rows.append((tier, a["success_rate_pct"], b["success_rate_pct"], a["p99_s"], b["p99_s"]))
        print(f"\nrun {attempt}: tier   live ok%   sim ok%   live p99   sim p99")
        for tier, a_ok, b_ok, a_p99, b_p99 in rows:
            print(f"{tier:10} {a_ok:9.2f} {b_ok:9.2f} {a_p99:10.3f} {b_p99:9.3f}")
        ok = {t: a for t, a, *_ in rows}
        assert ok["enterprise"] >= 99 and ok["free"] < 90  # the surge really overloaded the upstream
        misses = _misses(rows)
        if not misses:
            return
        print("missed:", "; ".join(misses))
    pytest.fail("live and simulated disagree in three live runs: " + "; ".join(misses))
