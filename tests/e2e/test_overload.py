"""Overload on loopback with a real gateway process and a capacity-limited mock upstream: the least
critical traffic is shed first, fast and honestly, and critical traffic keeps succeeding."""

import asyncio
import time

import aiohttp
import httpx
import pytest

from tests.e2e.harness import free_port, start_gateway, start_mock

BODY = b'{"model":"chat","messages":[{"role":"user","content":"breaking news"}],"max_tokens":32}'
KNOWN_REASONS = {"overload", "deadline", "queue_delay", "queue_timeout", "displaced", "gateway_overload",
                 "upstream_429"}


@pytest.fixture(scope="module")
def overload_env(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("overload")
    mock = start_mock(tmp, "--base-latency-s", "0.2", "--tokens-per-s", "0", "--max-in-flight", "4",
                      "--completion-tokens", "8")
    config = {
        "server": {"admin_key_env": "SW_TEST_ADMIN"},
        "models": [{"name": "chat", "deployments": [{"name": "capped", "base_url": mock.url + "/v1"}]}],
        "admission": {"initial_limit_units": 1000},
    }
    gw = start_gateway(tmp, config, env={"SW_TEST_ADMIN": "sw-admin-test-key-0001"},
                       tiers=("api", "plus", "free"))
    yield gw, mock
    gw.stop()
    mock.stop()


async def _load(url: str, keys: dict[str, str], rates: dict[str, float], duration_s: float):
    results: dict[str, list[tuple[int, float, dict[str, str]]]] = {tier: [] for tier in rates}

    async def one(session, tier):
        start = time.perf_counter()
        async with session.post(url, data=BODY, headers={"authorization": f"Bearer {keys[tier]}",
                                                         "content-type": "application/json"}) as r:
            await r.read()
            headers = {k.lower(): v for k, v in r.headers.items()}
            results[tier].append((r.status, time.perf_counter() - start, headers))

    async def arrivals(session, tier, rate, tasks):
        start = time.monotonic()
        n = 0
        while (at := start + n / rate) < start + duration_s:
            await asyncio.sleep(max(0.0, at - time.monotonic()))
            tasks.append(asyncio.create_task(one(session, tier)))
            n += 1

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        tasks: list[asyncio.Task[None]] = []
        await asyncio.gather(*(arrivals(session, t, r, tasks) for t, r in rates.items()))
        await asyncio.gather(*tasks)
    return results


def test_shedding_order_under_5x_overload(overload_env):
    gw, _ = overload_env
    # Capacity: 4 in flight x 200 ms = 20 req/s. Offered: critical 2/s, plus 30/s, free 60/s (4.6x).
    results = asyncio.run(_load(gw.url + "/v1/chat/completions", gw.keys, {"api": 2, "plus": 30, "free": 60}, 6.0))

    def success(tier):
        rows = results[tier]
        return sum(1 for s, _, _ in rows if s == 200) / len(rows)

    assert success("api") == 1.0, [r[:2] for r in results["api"] if r[0] != 200]
    assert success("plus") > success("free") + 0.2, (success("plus"), success("free"))
    total_ok = sum(1 for rows in results.values() for s, _, _ in rows if s == 200)
    assert total_ok >= 0.7 * 20 * 6.0, total_ok  # the upstream stayed busy with useful work
    sheds = [(lat, h) for rows in results.values() for s, lat, h in rows if s != 200]
    assert sheds
    for _, headers in sheds:
        assert headers["x-seawall-reason"] in KNOWN_REASONS, headers
        assert "retry-after" in headers, headers
        assert 1 <= int(headers["retry-after"]) <= 60 and int(headers["retry-after-ms"]) >= 1
    # Upstream 429s (while the limit learns the capacity) are absorbed, not passed on in bulk.
    passed_on = sum(1 for _, h in sheds if h["x-seawall-reason"] == "upstream_429")
    assert passed_on <= 0.1 * len(sheds), (passed_on, len(sheds))
    sheds.sort(key=lambda x: x[0])
    assert sheds[len(sheds) // 2][0] < 0.05, "most rejections are immediate"
    state = httpx.get(gw.url + "/admin/admission", headers={"authorization": "Bearer sw-admin-test-key-0001"},
                      timeout=5).json()
    units_per_request = len(BODY) // 4 + 32
    limit = state["groups"]["chat"]["limit_units"]
    assert 2 * units_per_request <= limit <= 8 * units_per_request, limit  # learned, near 4 requests
    metrics = httpx.get(gw.url + "/metrics", timeout=5).text
    assert 'seawall_shed_total{criticality="sheddable"' in metrics
    assert "seawall_admission_limit_units" in metrics


def test_admin_endpoint_needs_the_admin_key(overload_env):
    gw, _ = overload_env
    r = httpx.get(gw.url + "/admin/admission", headers={"authorization": f"Bearer {gw.keys['api']}"}, timeout=5)
    assert r.status_code == 403 and r.json()["error"]["code"] == "admin_only"


def test_free_port_helper_is_sane():
    assert 1024 < free_port() < 65536
