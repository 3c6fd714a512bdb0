"""Gateway overhead: the same load sent directly to the mock upstream and through seawall.

One gateway worker process (pinned to CPU 0), the mock upstream with 20 ms latency and the load
generator (pinned to CPU 1), all on loopback. Reports, side by side in one run:
- p50/p99 latency direct vs through the gateway at 1, 32 and 128 concurrent connections
  (closed loop; medians of ``--repeats`` runs);
- overhead at a fixed open-loop 500 requests/s;
- the highest open-loop rate at which the gateway's p99 stays under twice its low-load value;
- time-to-first-token overhead when streaming;
- gateway RSS at rest and under load.

    python bench/overhead.py [--quick]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _lab import closed_loop, cpu_s, open_loop, run_on_uvloop, start_gateway, start_mock, table, write_results

BODY = b'{"model":"chat","messages":[{"role":"user","content":"Say hello to the benchmark."}],"max_tokens":16}'
STREAM_BODY = (b'{"model":"chat","stream":true,"messages":[{"role":"user","content":"Say hello."}],'
               b'"max_tokens":16}')

CONFIG = """
server: {port: {port}}
store: {sqlite_path: "{workdir}/seawall.db", ledger_spill_path: "{workdir}/spill.jsonl"}
models:
  - name: chat
    deployments: [{base_url: "MOCK/v1", max_connections: 1024}]
"""


async def run(args: argparse.Namespace) -> str:
    dur = 2.0 if args.quick else 4.0
    repeats = 1 if args.quick else args.repeats
    workdir = Path(tempfile.mkdtemp(prefix="seawall-bench-"))
    mock = start_mock("--base-latency-s", "0.02", "--tokens-per-s", "0", cpus="1")
    stream_mock = start_mock("--base-latency-s", "0.02", "--tokens-per-s", "200", cpus="1")
    config = CONFIG.replace("MOCK", mock.url)
    config += f"""  - name: stream
    deployments: [{{base_url: "{stream_mock.url}/v1"}}]
"""
    gw, keys = start_gateway(config, workdir, cpus="0")
    os.sched_setaffinity(0, {1})
    headers = {"authorization": f"Bearer {keys['bench']}", "content-type": "application/json"}
    direct_url = mock.url + "/v1/chat/completions"
    gw_url = gw.url + "/v1/chat/completions"
    out = []
    try:
        rss_rest = gw.rss_mb()
        await closed_loop(gw_url, BODY, headers, concurrency=32, duration_s=1.0)  # warm up both paths
        rows = []
        for conc in (1, 32, 128):
            d50, d99, g50, g99, grps = [], [], [], [], []
            for _ in range(repeats):
                d = await closed_loop(direct_url, BODY, headers, concurrency=conc, duration_s=dur)
                g = await closed_loop(gw_url, BODY, headers, concurrency=conc, duration_s=dur)
                d50.append(d.p(0.5))
                d99.append(d.p(0.99))
                g50.append(g.p(0.5))
                g99.append(g.p(0.99))
                grps.append(g.rps)
            m = statistics.median
            rows.append([conc, m(d50), m(g50), m(g50) - m(d50), m(d99), m(g99), m(g99) - m(d99), m(grps)])
        out.append("### Closed loop, 20 ms upstream (ms)\n\n" + table(
            ["connections", "direct p50", "gateway p50", "overhead p50", "direct p99", "gateway p99",
             "overhead p99", "gateway req/s"], rows))

        rows = []
        m = statistics.median
        d50, d99, g50, g99, oks = [], [], [], [], []
        for _ in range(repeats):  # interleaved runs, medians: the machine is shared
            d = await open_loop(direct_url, BODY, headers, rate_per_s=500, duration_s=dur * 1.5)
            g = await open_loop(gw_url, BODY, headers, rate_per_s=500, duration_s=dur * 1.5)
            d50.append(d.p(0.5))
            d99.append(d.p(0.99))
            g50.append(g.p(0.5))
            g99.append(g.p(0.99))
            oks.append(f"{g.ok}/{g.sent}")
        low_p99 = m(g99)
        rows.append(["500/s open loop", m(d50), m(g50), m(g50) - m(d50), m(d99), m(g99), m(g99) - m(d99),
                     ", ".join(oks)])
        out.append(f"### Open loop at 500 requests/s (ms; medians of {repeats} interleaved runs)\n\n" + table(
            ["load", "direct p50", "gateway p50", "overhead p50", "direct p99", "gateway p99",
             "overhead p99", "gateway ok/sent"], rows)
            + "\n\nOverhead per run (p50): " + ", ".join(f"{gv - dv:+.2f}" for gv, dv in zip(g50, d50, strict=True))
            + " ms.")

        rows = []
        best_gw = best_direct = 0
        direct_failed = gw_failed = False
        rss_sustained = rss_rest
        rss_load = rss_rest
        for rate in (1000, 1500, 2000, 2500, 3000, 3500, 4000):
            d = await open_loop(direct_url, BODY, headers, rate_per_s=rate, duration_s=dur)
            cpu_before = cpu_s(gw.pid)
            g = await open_loop(gw_url, BODY, headers, rate_per_s=rate, duration_s=dur)
            cpu_us = (cpu_s(gw.pid) - cpu_before) / max(1, g.ok) * 1e6
            rss_now = gw.rss_mb()
            rss_load = max(rss_load, rss_now)
            d_ok = d.ok >= 0.999 * d.sent and d.rps >= 0.95 * rate
            g_ok = g.ok >= 0.999 * g.sent and g.rps >= 0.95 * rate and g.p(0.99) <= 2 * low_p99
            # The highest rate such that it and every lower one stayed within bounds.
            direct_failed, gw_failed = direct_failed or not d_ok, gw_failed or not g_ok
            best_direct = rate if not direct_failed else best_direct
            best_gw = rate if not gw_failed else best_gw
            rss_sustained = max(rss_sustained, rss_now) if not gw_failed else rss_sustained
            rows.append([rate, d.rps, d.p(0.99), g.rps, g.p(0.99), f"{g.ok}/{g.sent}", round(cpu_us),
                         round(rss_now), "yes" if g_ok else "no"])
            if not g_ok and not d_ok:
                break
        out.append(
            "### Highest open-loop rate with gateway p99 <= 2x its 500/s value "
            f"({2 * low_p99:.1f} ms)\n\n" + table(
                ["offered/s", "direct ok/s", "direct p99", "gateway ok/s", "gateway p99", "gateway ok/sent",
                 "gateway CPU µs/request", "gateway RSS MB", "within bound"], rows)
            + f"\n\nGateway sustains **{best_gw}/s**: the highest rate at which it, and every lower rate, "
              f"stayed within the bound (direct path with the same generator: {best_direct}/s; the load "
              "generator and the mock share one core, so the direct figure is the harness's own ceiling). "
              "The generator is seawall's own HTTP/1.1 client on uvloop, for both paths.")

        stream_body_headers = headers
        s_url_d = stream_mock.url + "/v1/chat/completions"
        s_url_g = gw.url + "/v1/chat/completions"
        body_d = STREAM_BODY
        body_g = STREAM_BODY.replace(b'"model":"chat"', b'"model":"stream"')
        td = await closed_loop(s_url_d, body_d, stream_body_headers, concurrency=8, duration_s=dur,
                               first_byte=True)
        tg = await closed_loop(s_url_g, body_g, stream_body_headers, concurrency=8, duration_s=dur,
                               first_byte=True)
        out.append("### Streaming time to first token, 8 connections (ms)\n\n" + table(
            ["", "direct", "gateway", "overhead"],
            [["TTFT p50", td.p(0.5), tg.p(0.5), tg.p(0.5) - td.p(0.5)],
             ["TTFT p99", td.p(0.99), tg.p(0.99), tg.p(0.99) - td.p(0.99)]]))
        out.append("### Gateway memory (RSS, MB)\n\n" + table(
            ["at rest", "peak up to the sustained rate", "peak overall (rates past it: overload)", "after load"],
            [[rss_rest, rss_sustained, rss_load, gw.rss_mb()]])
            + "\n\nPast the sustained rate requests pile up in flight (every one is admitted: the bench key is "
              "critical, and nothing limits the mock), and memory grows with them.")
    finally:
        gw.stop()
        mock.stop()
        stream_mock.stop()
    return "\n\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="short runs (a smoke test, not a result)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    body = run_on_uvloop(run(args))
    print(body)
    if not args.no_write and not args.quick:
        write_results("overhead", "Gateway overhead (bench/overhead.py)", body, sys.argv)


if __name__ == "__main__":
    main()
