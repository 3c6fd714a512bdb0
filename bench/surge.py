"""A news-driven surge against one upstream with fixed capacity: seawall vs a naive configuration.

The mock upstream serves at most ``--capacity`` requests at once, each taking ``--latency-s``
(beyond that it answers 429 at once, like a hosted provider). Open-loop load, 10% critical, 30%
sheddable_plus and 60% sheddable, steps through 1x, 3x, 10x and 50x of the upstream's capacity and
back to 1x. The same load runs through seawall with admission control and through a naive
configuration (admission off, single attempt): a pass-through that forwards everything.

Reported per configuration, step and tier: success rate, p50/p99 latency of successes, shed (429/
503) response p99, goodput as a fraction of the upstream's knee (measured on it first), gateway
RSS, and the time after the surge until the admission limit and the success rates are back to
normal.

The defaults are scaled to what one 2-core machine can offer *and* absorb: 8 in flight x 200 ms =
40 req/s of capacity, so 50x is 2,000 req/s of offered load (the load generator, the gateway and
the mock share the two cores).

    python bench/surge.py [--capacity 8] [--latency-s 0.2] [--step-s 10] [--quick]
                          [--upstream slots|batching|hosted]

``--upstream`` picks the mock's behaviour (default ``slots``, the figures above): ``batching`` is a
vLLM-like server whose /metrics seawall reads (``metrics_url``), ``hosted`` a provider with a
per-second request limit and latency that rises with load.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _lab import pct, run_on_uvloop, start_gateway, start_mock, table, write_results
from seawall.edges.upstreams.http1 import HttpClient, HttpError

TIERS = (("critical", "api", 0.10), ("sheddable_plus", "plus", 0.30), ("sheddable", "free", 0.60))
BODY = b'{"model":"chat","messages":[{"role":"user","content":"What happened today?"}],"max_tokens":32}'
# Paying (critical) requests stream, so their time to first token is measured: the response head
# comes with the first event (the gateway answers a stream after its first byte).
STREAM_BODY = (b'{"model":"chat","messages":[{"role":"user","content":"What happened today?"}],"max_tokens":32,'
               b'"stream":true}')

CONFIG = """
server: {port: {port}, admin_key_env: SEAWALL_BENCH_ADMIN}
store: {sqlite_path: "{workdir}/seawall.db", ledger_spill_path: "{workdir}/spill.jsonl"}
models:
  - name: chat
    deployments: [{base_url: "MOCK/v1", max_connections: 4096METRICS}]
ADMISSION
"""
UNITS_PER_REQUEST = len(BODY) // 4 + 32  # the gateway's estimate: prompt bytes / 4 + max_tokens
# A fixed-slot upstream answers 429 at once beyond its slots, so the limit may start near them; a
# batching server reports its own queue (metrics_url) and the limit starts at the default (generous,
# brought down to what the server runs by its first queue report) instead.
SEAWALL = "admission: {enabled: true, initial_limit_units: 1000}\n"
SEAWALL_REPORTING = "admission: {enabled: true}\n"
NAIVE = ("admission: {enabled: false}\n"
         "resilience: {max_attempts: 1, breaker: {consecutive_failures: 1000000, min_requests: 1000000}}\n")


@dataclass
class Bucket:
    ok: list[float] = field(default_factory=list)
    ttft: list[float] = field(default_factory=list)  # streams: time to the response head (first event)
    shed: list[float] = field(default_factory=list)
    failed: int = 0
    statuses: dict[str, int] = field(default_factory=dict)

    @property
    def sent(self) -> int:
        return len(self.ok) + len(self.shed) + self.failed


async def run_load(url: str, keys: dict[str, str], steps: list[tuple[str, float, float]], admin_key: str,
                   gw_url: str, gw_rss, rate_of, seed: int = 7) -> tuple[dict, list, list]:
    rng = random.Random(seed)
    results: dict[tuple[str, str], Bucket] = {}
    timeline: list[tuple[float, str, float, int]] = []  # (t, tier, latency, status) for recovery analysis
    samples: list[tuple[float, float, float]] = []  # (t, limit_units, rss_mb)
    client = HttpClient(url, max_connections=100_000, keepalive_s=60)  # seawall's own: a cheap generator
    start = time.monotonic()

    async def one(step: str, tier: str, key: str) -> None:
        t0 = time.perf_counter()
        status = 0
        r = None
        ttft = None
        stream = tier == "critical"
        try:
            r = await client.post(url, STREAM_BODY if stream else BODY,
                                  {"authorization": f"Bearer {key}", "content-type": "application/json"},
                                  connect_s=30, read_s=30, total_s=30)
            ttft = time.perf_counter() - t0
            body = await r.read()
            status = r.status
            if status == 200 and stream and b"[DONE]" not in body:
                status, ttft = 0, None  # a stream that broke after its head is no success
            reason = r.headers.get("x-seawall-reason", "")
            r.release()
        except HttpError:
            status, reason = 0, "client_error"
        finally:
            if r is not None:
                r.close()
        latency = time.perf_counter() - t0
        b = results.setdefault((step, tier), Bucket())
        label = f"{status} {reason}".strip()
        b.statuses[label] = b.statuses.get(label, 0) + 1
        if status == 200:
            b.ok.append(latency)
            if ttft is not None and stream:
                b.ttft.append(ttft)
        elif status in (429, 503):
            b.shed.append(latency)
        else:
            b.failed += 1
        timeline.append((time.monotonic() - start, tier, latency, status))

    async def watch() -> None:
        while True:
            try:
                state = await asyncio.to_thread(_admission_state, gw_url, admin_key)
                limit = state["groups"]["chat"]["limit_units"] if state["groups"] else float("nan")
            except Exception:
                limit = float("nan")
            samples.append((time.monotonic() - start, limit, gw_rss()))
            await asyncio.sleep(0.5)

    try:
        watcher = asyncio.create_task(watch())
        tasks: set[asyncio.Task[None]] = set()

        async def arrivals(step: str, tier: str, key: str, rate: float, duration: float) -> None:
            step_start = time.monotonic()
            if rate <= 0.0:
                await asyncio.sleep(duration)
                return
            n = 0
            phase = rng.random() / rate  # tiers do not arrive in lock step
            while True:
                at = step_start + phase + n / rate
                if at - step_start >= duration:
                    return
                await asyncio.sleep(max(0.0, at - time.monotonic()))
                n += 1
                t = asyncio.create_task(one(step, tier, key))
                tasks.add(t)
                t.add_done_callback(tasks.discard)

        for step, multiplier, duration in steps:
            await asyncio.gather(*(arrivals(step, tier, keys[key_name], rate_of(tier, multiplier), duration)
                                   for tier, key_name, _ in TIERS))
        if tasks:
            await asyncio.wait(tasks, timeout=35)
        watcher.cancel()
    finally:
        await client.close()
    return results, timeline, samples


def _admission_state(gw_url: str, admin_key: str) -> dict:
    req = urllib.request.Request(gw_url + "/admin/admission", headers={"authorization": f"Bearer {admin_key}"})
    with urllib.request.urlopen(req, timeout=2) as resp:
        return json.load(resp)


def recovery_s(timeline, samples, surge_end_s: float, base_limit: float) -> tuple[float, float]:
    """Seconds after the surge until (a) the limit is within 20% of its pre-surge value and (b) every
    tier's rolling 1-second success rate is >= 99%."""
    limit_t = next((t for t, lim, _ in samples if t >= surge_end_s and abs(lim - base_limit) <= 0.2 * base_limit),
                   float("nan"))
    ok_t = float("nan")
    after = [e for e in timeline if e[0] >= surge_end_s]
    t = surge_end_s
    while after and t < after[-1][0]:
        window = [e for e in after if t <= e[0] < t + 1.0]
        if window and all(
            sum(1 for e in window if e[1] == tier and e[3] == 200) >= 0.99 * sum(1 for e in window if e[1] == tier)
            for tier, _, _ in TIERS
        ):
            ok_t = t
            break
        t += 0.25
    return limit_t - surge_end_s, ok_t - surge_end_s


async def knee_rps(mock_url: str, capacity: int, level_s: float) -> tuple[float, list[tuple[int, float]]]:
    """The upstream's knee, measured on it directly: closed-loop load at doubling concurrency
    (from half the nominal capacity) until throughput stops growing (< 3% twice in a row, or
    requests start to time out); the knee is the highest throughput of successes seen, counting
    only what completes inside each level after a quarter of it as warm-up. What a gateway should
    keep the upstream at."""
    client = HttpClient(mock_url, max_connections=100_000, keepalive_s=60)
    curve: list[tuple[int, float]] = []
    try:
        concurrency, flat = max(1, capacity // 2), 0
        while concurrency <= 64 * capacity and flat < 2:
            ok = timeouts = 0
            begin = time.monotonic()
            counted_from, stop = begin + level_s / 4, begin + level_s

            async def worker(counted_from: float, stop: float) -> None:
                nonlocal ok, timeouts
                while time.monotonic() < stop:
                    r = None
                    try:
                        r = await client.post(mock_url + "/v1/chat/completions", BODY,
                                              {"content-type": "application/json"}, connect_s=10, read_s=10,
                                              total_s=10)
                        await r.read()
                        if r.status == 200:
                            if counted_from <= time.monotonic() < stop:
                                ok += 1
                        else:
                            await asyncio.sleep(0.001)  # a refusal: try again at once, without spinning
                        r.release()
                    except HttpError:
                        timeouts += 1
                    finally:
                        if r is not None:
                            r.close()

            await asyncio.gather(*(worker(counted_from, stop) for _ in range(concurrency)))
            rps = ok / (stop - counted_from)
            flat = flat + 1 if curve and rps < 1.03 * max(v for _, v in curve) else 0
            curve.append((concurrency, rps))
            if timeouts and rps > 0.0:
                break  # past the knee: requests start to time out
            concurrency *= 2
    finally:
        await client.close()
    knee = max(v for _, v in curve)
    if knee <= 0.0:
        raise RuntimeError(f"the upstream served nothing while its knee was measured: {curve}")
    return knee, curve


async def run(args: argparse.Namespace) -> str:
    capacity_rps = args.capacity / args.latency_s
    step_s = 3.0 if args.quick else args.step_s
    paying_rps = args.paying_share * capacity_rps
    if args.paying_per_step:
        step_s = max(step_s, args.paying_per_step / paying_rps)
    steps = [("alone", 0, step_s), ("1x", 1, step_s), ("3x", 3, step_s), ("10x", 10, step_s),
             ("50x", 50, step_s), ("back to 1x", 1, 2 * step_s)]
    shares = {tier: share for tier, _, share in TIERS}
    shares["critical"] = args.paying_share
    mock = start_mock(*upstream_flags(args.upstream, args.capacity, args.latency_s, capacity_rps))
    try:
        knee, curve = await knee_rps(mock.url, args.capacity, 1.0 if args.quick else 4.0)
    finally:
        mock.stop()

    def rate_of(tier: str, multiplier: float) -> float:
        # The surge is consumer traffic: critical (API) traffic stays at its normal share.
        return shares[tier] * capacity_rps * (1 if tier == "critical" else multiplier)
    surge_end = sum(d for _, _, d in steps[:-1])
    os.environ["SEAWALL_BENCH_ADMIN"] = admin = "sw-admin-bench-" + os.urandom(8).hex()
    out = []
    verdict_rows = []
    seawall = SEAWALL_REPORTING if args.upstream == "batching" else SEAWALL
    for name, admission in (("seawall", seawall), ("naive", NAIVE)):
        mock = start_mock(*upstream_flags(args.upstream, args.capacity, args.latency_s, capacity_rps))
        workdir = Path(tempfile.mkdtemp(prefix=f"seawall-surge-{name}-"))
        metrics = ', metrics_url: "MOCK/metrics"' if args.upstream == "batching" else ""
        config = CONFIG.replace("METRICS", metrics).replace("MOCK", mock.url).replace("ADMISSION", admission)
        gw, keys = start_gateway(config, workdir,
                                 tiers=[("api", "api"), ("plus", "plus"), ("free", "free")])
        try:
            results, timeline, samples = await run_load(gw.url + "/v1/chat/completions", keys, steps, admin,
                                                        gw.url, gw.rss_mb, rate_of)
            upstream_sends = (await asyncio.to_thread(_mock_stats, mock.url))["by_path"].get("/v1/chat/completions", 0)
        finally:
            gw.stop()
            mock.stop()
        rows = []
        goodput_of = {}
        for step, _, duration in steps:
            total_ok = sum(len(results.get((step, t), Bucket()).ok) for t, _, _ in TIERS)
            goodput_of[step] = total_ok / duration / knee
            for tier, _, _ in TIERS:
                b = results.get((step, tier), Bucket())
                succ = 100 * len(b.ok) / b.sent if b.sent else float("nan")
                rows.append([step, tier, b.sent, f"{succ:.2f}%", pct(b.ok, 0.5) * 1000, pct(b.ok, 0.99) * 1000,
                             pct(b.shed, 0.99) * 1000, b.failed])
            rows.append([step, "all", "", f"goodput {100 * goodput_of[step]:.0f}% of the knee", "", "", "", ""])
        pre = [lim for t, lim, _ in samples if step_s * 1.5 <= t < 2 * step_s]  # the 1x step
        base_limit = sorted(pre)[len(pre) // 2] if pre else float("nan")
        lim_rec, ok_rec = recovery_s(timeline, samples, surge_end, base_limit)
        rss = [r for _, _, r in samples]
        rss_by_step = {}
        limit_by_step = {}
        t0 = 0.0
        for step, _, d in steps:
            vals = [r for t, _, r in samples if t0 <= t < t0 + d]
            rss_by_step[step] = max(vals) if vals else float("nan")
            lims = sorted(lim for t, lim, _ in samples if t0 <= t < t0 + d and lim == lim)
            limit_by_step[step] = lims[len(lims) // 2] if lims else float("nan")
            t0 += d
        client_requests = sum(b.sent for b in results.values())
        served = sum(len(b.ok) for b in results.values())
        sends_per_ok = upstream_sends / served if served else float("nan")
        out.append(f"### {name}\n\n" + table(
            ["step", "tier", "sent", "success", "p50 ms", "p99 ms", "shed p99 ms", "other failures"], rows)
            + "\n\nGateway RSS by step (MB): "
            + ", ".join(f"{k} {v:.0f}" for k, v in rss_by_step.items())
            + f" (max {max(rss):.0f}). Median adaptive limit by step (work units; one request = "
              f"{UNITS_PER_REQUEST} units, capacity = {args.capacity * UNITS_PER_REQUEST}): "
            + ", ".join(f"{k} {v:.0f}" for k, v in limit_by_step.items())
            + f". Recovery after the surge: limit back within 20% in {lim_rec:.1f} s, "
              f"all tiers >= 99% success in {ok_rec:.1f} s. Upstream sends: {upstream_sends} for "
              f"{client_requests} client requests, {served} of them served: {sends_per_ok:.3f} sends per "
              "served request (refusals by the gateway itself send nothing).")
        crit = {s: results.get((s, "critical"), Bucket()) for s, _, _ in steps}
        unloaded_p99 = pct(crit["alone"].ttft, 0.99)  # paying traffic with no consumer traffic at all
        sheds = [x for s, _, _ in steps for t, _, _ in TIERS for x in results.get((s, t), Bucket()).shed]
        for step in ("alone", "1x", "3x", "10x", "50x"):
            b = crit[step]
            verdict_rows.append([name, step, b.sent, f"{100 * len(b.ok) / max(1, b.sent):.2f}%",
                                 f"{pct(b.ttft, 0.99) * 1000:.0f}",
                                 f"{pct(b.ttft, 0.99) / unloaded_p99:.2f}x" if unloaded_p99 == unloaded_p99 else "",
                                 f"{100 * goodput_of[step]:.0f}%",
                                 f"{upstream_sends / client_requests:.3f} / {sends_per_ok:.3f}" if step == "alone"
                                 else "",
                                 f"{pct(sheds, 0.99) * 1000:.1f}" if step == "alone" else "",
                                 dict(sorted(b.statuses.items()))])
    header = (f"Upstream behaviour `{args.upstream}`. "
              f"Upstream capacity {args.capacity} in flight x {args.latency_s * 1000:.0f} ms = {capacity_rps:.0f} "
              f"req/s nominal; its knee, measured on it directly (closed loop, doubling concurrency: "
              + ", ".join(f"{c}: {v:.0f}" for c, v in curve) + f" req/s), is **{knee:.0f} req/s**. "
              f"Steps of {step_s:.0f} s: paying traffic alone (its unloaded TTFT), then 1x/3x/10x/50x, then 1x "
              f"for {2 * step_s:.0f} s. Paying (critical, "
              f"streaming) traffic is {100 * args.paying_share:.0f}% of nominal capacity at every step "
              f"({paying_rps:.0f} req/s, {paying_rps * step_s:.0f} a step); consumer traffic is 30% "
              "sheddable_plus / 60% sheddable of capacity at 1x, times the step. Open loop; clients do not retry."
              + (" On `batching` a sequence's time per token grows as the batch fills, so the knee is "
                 "below the nominal figure." if args.upstream == "batching" else ""))
    summary = "### Paying traffic under surge\n\n" + table(
        ["config", "step", "paying sent", "paying success", "paying TTFT p99 ms", "TTFT p99 / unloaded",
         "goodput / knee", "upstream sends per client / served request", "shed p99 ms (all)",
         "paying statuses"],
        verdict_rows)
    return header + "\n\n" + summary + "\n\n" + "\n\n".join(out)


def upstream_flags(upstream: str, capacity: int, latency_s: float, capacity_rps: float) -> list[str]:
    """The mock's flags for each behaviour (seawall.mock.servers), all near ``capacity_rps``: fixed
    slots (429 beyond ``capacity``); continuous batching (``capacity`` sequences, the rest queue,
    its /metrics read by seawall); a hosted provider (``capacity_rps`` a second for the key, twice
    as slow at ``capacity`` in flight)."""
    common = ["--base-latency-s", str(latency_s), "--completion-tokens", "8"]
    if upstream == "batching":
        # Decode-bound like a real server: a lone request's 32 tokens take ``latency_s`` after a 20 ms
        # prefill, at most ``capacity`` sequences decode together (slower as the batch fills), the
        # rest wait in the server's FIFO queue.
        return ["--base-latency-s", "0.02", "--completion-tokens", "32", "--behaviour", "batching",
                "--max-num-seqs", str(capacity), "--tokens-per-s", f"{32 / latency_s:g}"]
    if upstream == "hosted":
        return [*common, "--behaviour", "hosted", "--soft-concurrency", str(capacity), "--tokens-per-s", "0",
                "--requests-per-minute", str(capacity_rps * 60)]
    return [*common, "--tokens-per-s", "0", "--max-in-flight", str(capacity)]


def _mock_stats(url: str) -> dict:
    with urllib.request.urlopen(url + "/mock/stats", timeout=10) as resp:
        return json.load(resp)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--capacity", type=int, default=8)
    parser.add_argument("--latency-s", type=float, default=0.2)
    parser.add_argument("--step-s", type=float, default=10.0)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--upstream", choices=("slots", "batching", "hosted"), default="slots")
    parser.add_argument("--paying-share", type=float, default=0.10,
                        help="paying (critical) traffic as a share of nominal capacity, at every step")
    parser.add_argument("--paying-per-step", type=int, default=0,
                        help="lengthen the steps so that each has at least this many paying requests")
    args = parser.parse_args()
    body = run_on_uvloop(run(args))
    print(body)
    if not args.quick:
        title = "Surge: seawall vs naive (bench/surge.py)"
        write_results("surge" if args.upstream == "slots" else f"surge-{args.upstream}",
                      title if args.upstream == "slots" else f"{title}, {args.upstream} upstream", body, sys.argv)


if __name__ == "__main__":
    main()
