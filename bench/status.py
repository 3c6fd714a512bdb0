"""The status page during a surge: ``/status`` and ``/api/v2/summary.json`` latency while admission sheds.

An upstream that serves 8 requests at once (200 ms each: 40 req/s); consumer traffic (free tier,
open loop) at 1x, 10x and 50x of that capacity for ``--step-s`` each, with critical API traffic at
10% of capacity throughout. A probe fetches the HTML page and the summary JSON, alternately, every
20 ms, and records latency and status. Also measured: the time one refresh of the board takes
(reads and renders) in-process, for a page of 2 groups and 4 deployments with 90 days of history.

    python bench/status.py [--step-s 8]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

from _lab import open_loop, pct, run_on_uvloop, start_gateway, start_mock, table, write_results

CONFIG = """
server: {port: {port}}
store: {sqlite_path: "{workdir}/seawall.db", ledger_spill_path: "{workdir}/spill.jsonl"}
models:
  - name: chat
    deployments: [{name: capped, base_url: "MOCK/v1"}]
slo:
  flush_interval_s: 1
  evaluate_interval_s: 5
  status: {refresh_interval_s: 2}
"""
BODY = b'{"model":"chat","messages":[{"role":"user","content":"breaking news"}],"max_tokens":8}'


async def probe(url: str, stop: asyncio.Event) -> dict[str, list[tuple[int, float]]]:
    out: dict[str, list[tuple[int, float]]] = {"/status": [], "/api/v2/summary.json": []}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        while not stop.is_set():
            for path, rows in out.items():
                start = time.perf_counter()
                try:
                    async with session.get(url + path) as r:
                        await r.read()
                        rows.append((r.status, time.perf_counter() - start))
                except (aiohttp.ClientError, TimeoutError):
                    rows.append((0, time.perf_counter() - start))
                await asyncio.sleep(0.01)
    return out


async def run(step_s: float) -> str:
    mock = start_mock("--base-latency-s", "0.2", "--tokens-per-s", "0", "--max-in-flight", "8",
                      "--completion-tokens", "8")
    workdir = Path(tempfile.mkdtemp(prefix="seawall-status-"))
    gw, keys = start_gateway(CONFIG.replace("MOCK", mock.url), workdir, tiers=[("api", "api"), ("free", "free")])
    rows = []
    try:
        await asyncio.sleep(1.0)
        for name, multiplier in (("1x", 1), ("10x", 10), ("50x", 50)):
            stop = asyncio.Event()
            prober = asyncio.create_task(probe(gw.url, stop))
            url = gw.url + "/v1/chat/completions"
            ctype = {"content-type": "application/json"}
            free, api = await asyncio.gather(
                open_loop(url, BODY, {**ctype, "authorization": f"Bearer {keys['free']}"},
                          rate_per_s=40 * multiplier * 0.9, duration_s=step_s, timeout_s=10),
                open_loop(url, BODY, {**ctype, "authorization": f"Bearer {keys['api']}"},
                          rate_per_s=4, duration_s=step_s, timeout_s=10))
            stop.set()
            probes = await prober
            shed = free.statuses.get(503, 0) / max(free.sent, 1)
            for path, got in probes.items():
                lat = [s for _, s in got]
                errors = sum(1 for status, _ in got if status != 200)
                rows.append((name, f"{free.sent / step_s:.0f}", f"{shed:.0%}", f"{api.ok}/{api.sent}", path,
                             len(got), errors, pct(lat, 0.5) * 1000, pct(lat, 0.99) * 1000, max(lat) * 1000))
    finally:
        gw.stop()
        mock.stop()
    return table(["step", "free req/s sent", "free shed", "api ok/sent", "path", "probes", "errors", "p50 ms",
                  "p99 ms", "max ms"], rows)


async def refresh_cost() -> str:
    """One board refresh (4 store reads + 6 renders) with 90 days of day rows and a day of minute rows."""
    from seawall.edges.status.board import StatusBoard
    from seawall.edges.stores.sqlite_slo import SqliteSloStore
    from seawall.env import SystemClock
    from seawall.slo.settings import StatusSettings
    from seawall.slo.store import DAY_S, CountRow

    ids = ["front_door", "auth", "group:a", "deployment:a1", "deployment:a2", "group:b", "deployment:b1",
           "deployment:b2"]
    store = SqliteSloStore(Path(tempfile.mkdtemp()) / "slo.db")
    now = int(time.time())
    rows = [CountRow(DAY_S, (now // DAY_S - d) * DAY_S, c, t, 10_000, 3, 9000, 10, 900.0)
            for d in range(90) for c in ids for t in ("enterprise", "api", "plus", "free")]
    rows += [CountRow(60, now - m * 60, c, t, 100, 0, 90, 1, 9.0) for m in range(1440) for c in ids
             for t in ("enterprise", "api", "plus", "free")]
    await store.add(rows)
    board = StatusBoard(store, StatusSettings(), ids, clock=SystemClock(), bucket_s=60)
    times = []
    for _ in range(20):
        start = time.perf_counter()
        await board.refresh()
        times.append(time.perf_counter() - start)
    render = []
    for _ in range(20):
        start = time.perf_counter()
        board._render(board.view)
        render.append(time.perf_counter() - start)
    return table(["what", "median ms", "max ms"], [
        ("refresh (reads + renders), 8 components, 46k minute rows", pct(times, 0.5) * 1000, max(times) * 1000),
        ("renders only (HTML, 4 JSON, Atom)", pct(render, 0.5) * 1000, max(render) * 1000)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--step-s", type=float, default=8.0)
    args = parser.parse_args()
    surge = run_on_uvloop(run(args.step_s))
    cost = run_on_uvloop(refresh_cost())

    body = (f"Upstream 8 in flight x 200 ms (40 req/s); free-tier traffic open loop at 0.9x, 9x and 45x of it "
            f"for {args.step_s:g} s each, api traffic at 4 req/s; a probe fetches `/status` and "
            "`/api/v2/summary.json` alternately every ~10 ms.\n\n" + surge +
            "\n\n### One refresh of the status board (in-process, SQLite)\n\n" + cost)
    print(body)
    write_results("status", "Status page under a surge (bench/status.py)", body, sys.argv)


if __name__ == "__main__":
    main()
