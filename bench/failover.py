"""Failover cost: latency added when the primary deployment is hard down, and while it flaps.

Three model groups in one gateway, each a primary (priority 0) and a fallback (priority 1), all
served by mocks with the same 20 ms latency, so any difference is the gateway's failover work:

- ``baseline``: both deployments healthy (mock B); the primary serves everything.
- ``down``: the primary is a port nobody listens on; after warm-up its breaker is open, so the
  router skips it (plus a half-open probe now and then: a refused connection, then failover).
- ``flapping``: the primary (mock C) is toggled between ``error_rate`` 1 and 0 every second via
  ``POST /mock/config``; failed attempts cost a 20 ms upstream 500 and a retry on the fallback
  until the breaker opens, then half-open probes close it again in a healthy second.

Open loop at a fixed rate, the three runs interleaved and repeated (medians reported), one gateway
worker pinned to CPU 0, mocks and load generator on CPU 1, all on loopback. Attempts per request
come from the gateway's usage ledger (it lists every deployment tried, refused connections too).

    python bench/failover.py [--quick] [--rate 300] [--repeats 3]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sqlite3
import statistics
import sys
import tempfile
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _lab import Samples, free_port, open_loop, start_gateway, start_mock, table, write_results

SCENARIOS = ("baseline", "down", "flapping")
TARGET_ADDED_P99_MS = 5.0
FLAP_PERIOD_S = 1.0

CONFIG = """
server: {port: {port}}
store: {sqlite_path: "{workdir}/seawall.db", ledger_spill_path: "{workdir}/spill.jsonl"}
models:
  - name: baseline
    deployments:
      - {name: baseline-primary, base_url: "B/v1", priority: 0}
      - {name: baseline-fallback, base_url: "B/v1", priority: 1}
  - name: down
    deployments:
      - {name: down-primary, base_url: "DEAD/v1", priority: 0}
      - {name: down-fallback, base_url: "B/v1", priority: 1}
  - name: flapping
    deployments:
      - {name: flapping-primary, base_url: "C/v1", priority: 0}
      - {name: flapping-fallback, base_url: "B/v1", priority: 1}
"""


def body(model: str) -> bytes:
    return (b'{"model":"%s","messages":[{"role":"user","content":"Say hello to the benchmark."}],'
            b'"max_tokens":16}' % model.encode())


async def flap(url: str, stop: asyncio.Event) -> int:
    """Toggle the mock at ``url`` between failing every request and failing none; returns toggles."""
    toggles = 0
    async with aiohttp.ClientSession() as session:
        while not stop.is_set():
            rate = 1.0 if toggles % 2 == 0 else 0.0
            async with session.post(url + "/mock/config", json={"error_rate": rate}) as resp:
                resp.raise_for_status()
            toggles += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), FLAP_PERIOD_S)
        async with session.post(url + "/mock/config", json={"error_rate": 0.0}) as resp:
            resp.raise_for_status()
    return toggles


def ledger_figures(db: Path, model: str) -> tuple[float, float]:
    """(attempts per request, share of requests answered by the primary) from the usage ledger."""
    with sqlite3.connect(db, timeout=5) as conn:
        rows = conn.execute("SELECT deployments FROM usage WHERE model = ? AND status = 200",
                            (model,)).fetchall()
    if not rows:
        return float("nan"), float("nan")
    tried = [[d for d in deps.split(",") if d] for (deps,) in rows]
    primary = sum(1 for names in tried if names[-1] == f"{model}-primary")
    return sum(len(names) for names in tried) / len(rows), primary / len(rows)


async def run(args: argparse.Namespace) -> str:
    duration_s = 2.0 if args.quick else args.duration
    repeats = 1 if args.quick else args.repeats
    workdir = Path(tempfile.mkdtemp(prefix="seawall-bench-failover-"))
    mock_args = ("--base-latency-s", "0.02", "--tokens-per-s", "0")
    fallback = start_mock(*mock_args, cpus="1")
    flappy = start_mock(*mock_args, cpus="1")
    config = (CONFIG.replace("B/v1", fallback.url + "/v1").replace("C/v1", flappy.url + "/v1")
              .replace("DEAD/v1", f"http://127.0.0.1:{free_port()}/v1"))
    gw, keys = start_gateway(config, workdir, cpus="0")
    os.sched_setaffinity(0, {1})
    headers = {"authorization": f"Bearer {keys['bench']}", "content-type": "application/json"}
    url = gw.url + "/v1/chat/completions"
    stop = asyncio.Event()
    flapper = asyncio.create_task(flap(flappy.url, stop))
    runs: dict[str, list[Samples]] = {s: [] for s in SCENARIOS}
    try:
        for scenario in SCENARIOS:  # warm up: pools, and the dead primary's breaker opens
            await open_loop(url, body(scenario), headers, rate_per_s=args.rate, duration_s=1.0)
        for r in range(repeats):
            order = SCENARIOS[r % 3:] + SCENARIOS[:r % 3]  # rotate, so no scenario always goes first
            for scenario in order:
                runs[scenario].append(await open_loop(url, body(scenario), headers, rate_per_s=args.rate,
                                                      duration_s=duration_s))
    finally:
        stop.set()
        toggles = await flapper
        gw.stop()
        fallback.stop()
        flappy.stop()

    def med(scenario: str, q: float) -> float:
        return statistics.median(s.p(q) for s in runs[scenario])

    base50, base99 = med("baseline", 0.5), med("baseline", 0.99)
    labels = {"baseline": "healthy primary (baseline)", "down": "primary hard down (breaker open)",
              "flapping": f"primary flapping (500s on/off every {FLAP_PERIOD_S:.0f} s)"}
    rows = []
    for scenario in SCENARIOS:
        ok = sum(s.ok for s in runs[scenario])
        sent = sum(s.sent for s in runs[scenario])
        p50, p99, p999 = med(scenario, 0.5), med(scenario, 0.99), med(scenario, 0.999)
        attempts, primary_share = ledger_figures(workdir / "seawall.db", scenario)
        rows.append([labels[scenario], f"{ok}/{sent}", p50, p99, p999, p50 - base50, p99 - base99, attempts,
                     f"{100 * primary_share:.1f}%"])
    added_down = med("down", 0.99) - base99
    verdict = "met" if added_down < TARGET_ADDED_P99_MS else "MISSED"
    return (
        f"### Open loop at {args.rate:.0f} requests/s, 20 ms upstream, {repeats} x {duration_s:.0f} s per "
        f"scenario, interleaved (ms, medians of runs)\n\n"
        + table(["primary", "ok/sent", "p50", "p99", "p99.9", "added p50", "added p99", "attempts/request",
                 "served by primary"], rows)
        + f"\n\nAdded p99 with the primary hard down: **{added_down:.2f} ms** (target < "
          f"{TARGET_ADDED_P99_MS:.0f} ms: {verdict}). The flapping primary was toggled {toggles} times. "
          "Attempts per request and the primary's share (from the ledger) include the 1 s "
          "warm-up runs."
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="short runs (a smoke test, not a result)")
    parser.add_argument("--rate", type=float, default=300.0, help="requests per second, open loop")
    parser.add_argument("--duration", type=float, default=6.0, help="seconds per run")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    result = asyncio.run(run(args))
    print(result)
    if not args.no_write and not args.quick:
        write_results("failover", "Failover latency (bench/failover.py)", result, sys.argv)


if __name__ == "__main__":
    main()
