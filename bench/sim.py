"""How fast the surge simulator runs, and that its memory stays bounded as requests grow.

Runs ``scandal-surge`` (the full 55-minute scenario) scaled up in load until about ten million
requests reach the gateway replicas, over 50 replicas, under seawall's defaults and the naive
pass-through, each in a fresh process. By default one run at a time, so that each profile's figure
is its own and not shared with the other's (``--jobs 2`` runs the two profiles at once, one per
core). A smaller run of the same shape (a tenth of the load) shows whether memory grows with the
number of requests: it should not, beyond the requests in flight.

The machine may be shared: the table gives each run's CPU seconds next to its wall seconds, and the
note the load average around the runs, so a slow wall time can be told from a slow simulator.

    python bench/sim.py [--load-scale 7.5] [--replicas 50] [--jobs 1] [--quick]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _lab import table, write_results

TARGET_S = 120.0  # issue 5: ten million requests over 50 replicas in under two minutes


def _one(args: tuple[str, float, int]) -> dict[str, float | int | str]:
    profile, load_scale, replicas = args
    from seawall.surge.scenario import load_scenario
    from seawall.surge.sim import simulate

    scenario = load_scenario("scandal-surge").scaled(load_scale=load_scale)
    started = time.perf_counter()
    cpu_started = time.process_time()
    result = simulate(scenario, profile, replicas=replicas)
    wall = time.perf_counter() - started
    cpu = time.process_time() - cpu_started
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    crit = result.recorder.summary(result.tiers.index("api"))
    return {"profile": profile, "load_scale": load_scale, "replicas": replicas, "requests": result.requests,
            "user_requests": result.user_requests, "events": result.events, "wall_s": wall, "cpu_s": cpu,
            "requests_per_s": result.requests / wall, "events_per_s": result.events / wall, "max_rss_mb": rss_mb,
            "api_success_pct": crit["success_rate_pct"] or 0.0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--load-scale", type=float, default=7.5)
    parser.add_argument("--replicas", type=int, default=50)
    parser.add_argument("--jobs", type=int, default=1, choices=(1, 2), help="runs at once (default one)")
    parser.add_argument("--quick", action="store_true", help="a tenth of the load; nothing written")
    args = parser.parse_args()
    big = args.load_scale / (10 if args.quick else 1)
    jobs = [("seawall", big, args.replicas), ("naive", big, args.replicas)]
    small = [("seawall", big / 10, args.replicas), ("naive", big / 10, args.replicas)]
    ctx = multiprocessing.get_context("spawn")
    rows = []
    load_before = os.getloadavg()
    with ctx.Pool(args.jobs, maxtasksperchild=1) as pool:
        for batch in (small, jobs):
            rows += pool.map(_one, batch)
    load_after = os.getloadavg()
    headers = ["profile", "load scale", "replicas", "requests", "user requests", "events", "wall s", "cpu s",
               "requests/s", "events/s", "max RSS MB", "api success %"]
    body = table(headers, [[r["profile"], r["load_scale"], r["replicas"], f"{r['requests']:,}",
                            f"{r['user_requests']:,}", f"{r['events']:,}", r["wall_s"], r["cpu_s"],
                            f"{r['requests_per_s']:,.0f}", f"{r['events_per_s']:,.0f}", r["max_rss_mb"],
                            r["api_success_pct"]] for r in rows])
    biggest = [r for r in rows if r["load_scale"] == big]
    how = ("one run at a time, each in a fresh process" if args.jobs == 1
           else "the two profiles at once, one per core, each in a fresh process")
    verdicts = []
    for r in biggest:
        wall, requests = float(r["wall_s"]), int(r["requests"])
        per_10m = wall * 10_000_000 / requests
        verdicts.append(f"{r['profile']} {requests:,} requests in {wall:.0f} s ({float(r['cpu_s']):.0f} s of CPU), "
                        f"{per_10m:.0f} s per ten million: {'under' if per_10m < TARGET_S else 'over'} the "
                        f"{TARGET_S:.0f} s target")
    note = (f"\n\nscandal-surge (55 simulated minutes) with arrival rates and upstream capacity x{big:g}, over "
            f"{args.replicas} gateway replicas; {how}. Load average (1 min) {load_before[0]:.1f} before the runs "
            f"and {load_after[0]:.1f} after, on {os.cpu_count()} cores, of which the runs account for {args.jobs}: "
            "the rest was other work on the machine. \"requests\" are the HTTP requests that reached the replicas "
            "(users' first attempts, their SDK retries, and the invalid-key flood); \"user requests\" the users' own; "
            "\"cpu s\" the simulating process's own CPU time. Memory: compare max RSS at x"
            f"{big / 10:g} and x{big:g} (ten times the requests). At x{big:g}: " + "; ".join(verdicts) + ".")
    print(body + note)
    if not args.quick:
        write_results("sim", "Surge simulator speed (bench/sim.py)", body + note, sys.argv)


if __name__ == "__main__":
    main()
