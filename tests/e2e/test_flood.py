"""The bulkhead: a flood of sheddable traffic that exceeds what the public listener's CPU can parse
does not touch critical traffic on its own lane (a separate process with its own event loop).

The flood clients run at nice 10: in production they are other machines on the internet, not
processes sharing the gateway's two cores; lowering their priority is how this test keeps the
load generator from standing in for the gateway's own CPU.
"""

import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import httpx
import pytest

from tests.e2e.harness import free_port, start_gateway, start_mock, wait_for_key

FLOOD = Path(__file__).with_name("flood_client.py")
BODY = b'{"model":"chat","messages":[{"role":"user","content":"status"}],"max_tokens":8}'


@pytest.fixture(scope="module")
def laned(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("flood")
    # Two upstreams, so that what the critical lane measures is the gateway's bulkhead, not the
    # queue in front of one mock process that is also answering the whole flood. The flood's
    # upstream answers at once, so the closed-loop flood runs as fast as the public listener's CPU.
    mock = start_mock(tmp, "--base-latency-s", "0.2", "--tokens-per-s", "0")
    bulk = start_mock(tmp, "--base-latency-s", "0", "--tokens-per-s", "0")
    lane_port = free_port()
    config = {
        "server": {"lanes": [{"name": "critical", "port": lane_port, "min_criticality": "critical"}]},
        "models": [{"name": "chat", "deployments": [{"name": "m", "base_url": mock.url + "/v1"}]},
                   {"name": "bulk", "deployments": [{"name": "b", "base_url": bulk.url + "/v1"}]}],
    }
    gw = start_gateway(tmp, config, tiers=("api", "free"))
    lane_url = f"http://127.0.0.1:{lane_port}"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            if httpx.get(lane_url + "/readyz", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.1)
    for key in gw.keys.values():
        wait_for_key(lane_url, key)
    yield gw, lane_url
    gw.stop()
    mock.stop()
    bulk.stop()


async def _critical(url: str, key: str, rate: float, seconds: float) -> list[tuple[int, float]]:
    out: list[tuple[int, float]] = []

    async def one(session):
        start = time.perf_counter()
        try:
            headers = {"authorization": f"Bearer {key}", "content-type": "application/json"}
            async with session.post(url + "/v1/chat/completions", data=BODY, headers=headers) as r:
                await r.read()
                out.append((r.status, time.perf_counter() - start))
        except (TimeoutError, aiohttp.ClientError):
            out.append((0, time.perf_counter() - start))

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15)) as session:
        tasks = []
        start = time.monotonic()
        for n in range(int(rate * seconds)):
            await asyncio.sleep(max(0.0, start + n / rate - time.monotonic()))
            tasks.append(asyncio.create_task(one(session)))
        await asyncio.gather(*tasks)
    return out


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process, from /proc."""
    import os

    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _quantile(rows, q: float) -> float:
    lat = sorted(latency for status, latency in rows if status == 200)
    return lat[min(len(lat) - 1, int(q * len(lat)))]


def _p99(rows):
    return _quantile(rows, 0.99)


def test_lane_refuses_keys_below_its_criticality(laned):
    gw, lane_url = laned
    r = httpx.post(lane_url + "/v1/chat/completions", content=BODY, timeout=10,
                   headers={"authorization": f"Bearer {gw.keys['free']}", "content-type": "application/json"})
    assert r.status_code == 403 and r.json()["error"]["code"] == "wrong_lane"
    assert r.headers["x-should-retry"] == "false"


def test_critical_lane_holds_while_the_public_listener_is_flooded(laned):
    gw, lane_url = laned
    baseline = asyncio.run(_critical(lane_url, gw.keys["api"], 20, 3.0))
    assert all(status == 200 for status, _ in baseline)
    unloaded_p99 = _p99(baseline)
    floods = [subprocess.Popen(["nice", "-n", "10", sys.executable, str(FLOOD), gw.url + "/v1/chat/completions",
                                gw.keys["free"], "8", "64", "bulk"], stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
              for _ in range(3)]
    try:
        time.sleep(1.0)  # let the flood build up
        cpu_start, wall_start = _cpu_s(gw.proc.popen.pid), time.monotonic()
        during = asyncio.run(_critical(lane_url, gw.keys["api"], 20, 5.0))
        public_cpu = (_cpu_s(gw.proc.popen.pid) - cpu_start) / (time.monotonic() - wall_start)
        shared = asyncio.run(_critical(gw.url, gw.keys["api"], 20, 1.5))
    finally:
        outputs = [json.loads(f.communicate(timeout=30)[0] or b"{}") for f in floods]
    flood_sent = sum(o.get("sent", 0) for o in outputs)
    ok = sum(1 for status, _ in during if status == 200)
    print(f"\npublic listener CPU during the flood: {100 * public_cpu:.0f}% of a core, flood median latency "
          f"{1000 * min(o.get('median_s', 0.0) for o in outputs):.0f} ms; "
          f"critical lane: {ok}/{len(during)} ok, p99 {1000 * _p99(during):.0f} ms "
          f"(unloaded {1000 * unloaded_p99:.0f} ms); same traffic on the flooded public port: "
          f"{sum(1 for s, _ in shared if s == 200)}/{len(shared)} ok, p99 {1000 * _p99(shared):.0f} ms; "
          f"flood: {flood_sent} requests, {[o.get('statuses') for o in outputs]}; medians: unloaded "
          f"{1000 * _quantile(baseline, 0.5):.0f} ms, lane {1000 * _quantile(during, 0.5):.0f} ms, public port "
          f"{1000 * _quantile(shared, 0.5):.0f} ms")
    assert ok == len(during), [row for row in during if row[0] != 200][:5]
    # With 100 samples the p99 is one request, and one scheduler stall on a shared two-core machine
    # decides it: the bound on the p95 is the tight one, the one on the slowest request generous.
    assert _quantile(during, 0.95) <= 1.5 * unloaded_p99, (_quantile(during, 0.95), unloaded_p99)
    assert _p99(during) <= 3 * unloaded_p99, (_p99(during), unloaded_p99)
    # The flood really was more than the public listener could parse: its upstream answers at once
    # and a request costs the listener well under a millisecond of CPU, yet the flood's requests
    # waited tens of milliseconds in line for it.
    assert flood_sent > 2000
    flood_median_s = min(o.get("median_s", 0.0) for o in outputs)
    assert flood_median_s > 0.01, flood_median_s
