"""metrics_url: parsing a server's Prometheus text, polling it with bounds, and what a reading does."""

from __future__ import annotations

import asyncio

import pytest
from aiohttp import web

from seawall.algorithms.breaker import CircuitBreaker
from seawall.algorithms.limit import Gradient2Limit
from seawall.algorithms.partition import PartitionedLimiter
from seawall.core.types import Criticality
from seawall.edges.upstream_metrics import UpstreamMetricsPoller, parse_load
from seawall.env import SystemClock
from seawall.mock import MockConfig, start_mock
from seawall.policies.deployment import DeploymentHandle
from seawall.policies.gate import AdmissionGate, Ticket
from seawall.policies.upstream_load import UpstreamLoad, report_load

VLLM = """# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{model_name="a"} 60
vllm:num_requests_running{model_name="b"} 4
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{model_name="a"} 12
# TYPE vllm:gpu_cache_usage_perc gauge
vllm:gpu_cache_usage_perc{model_name="a"} 0.83
"""


def test_vllm_tgi_and_sglang_names_are_read_and_label_sets_summed() -> None:
    assert parse_load(VLLM) == UpstreamLoad(64.0, 12.0, 0.83)
    tgi = "tgi_batch_current_size 7\n# TYPE tgi_queue_size gauge\ntgi_queue_size 2\n"
    assert parse_load(tgi) == UpstreamLoad(7.0, 2.0, None)
    sglang = "sglang:num_running_reqs 3\nsglang:num_queue_reqs 0\n"
    assert parse_load(sglang) == UpstreamLoad(3.0, 0.0, None)


@pytest.mark.parametrize("text", [
    "", "<html>502 Bad Gateway</html>", "vllm:num_requests_running 3\n",  # no waiting gauge
    "vllm:num_requests_running NaN\nvllm:num_requests_waiting 1\n",
    "vllm:num_requests_running -1\nvllm:num_requests_waiting 1\n", "\x00\xff{garbage",
])
def test_garbage_is_no_reading(text: str) -> None:
    assert parse_load(text) is None


def _gate_and_deployment() -> tuple[AdmissionGate, DeploymentHandle]:
    clock = SystemClock()
    gate = AdmissionGate("chat", clock=clock, limit=Gradient2Limit(initial_limit=10_000.0, max_limit=1e6),
                         limiter=PartitionedLimiter({}))

    async def send(*_: object) -> object:
        raise AssertionError("not called")

    dep = DeploymentHandle("vllm", send, CircuitBreaker(), clock)  # type: ignore[arg-type]
    return gate, dep


def test_a_reading_takes_the_waiting_share_off_the_limit_and_sets_headroom() -> None:
    gate, dep = _gate_and_deployment()
    dep.inflight_units = 8000.0
    ticket = gate.offer(Criticality.CRITICAL, 8000.0, 1e9, lambda: None)  # type: ignore[arg-type, return-value]
    assert isinstance(ticket, Ticket) and gate.limiter.inflight == 8000.0
    report_load(gate, dep, UpstreamLoad(running=60.0, waiting=20.0), 100.0)
    assert dep.headroom == pytest.approx(0.75)
    assert gate.limit.limit == pytest.approx(8000.0 - 8000.0 * 0.25)
    report_load(gate, dep, UpstreamLoad(running=0.0, waiting=0.0), 200.0)
    assert dep.headroom == 1.0


async def test_a_slow_bad_or_down_endpoint_is_ignored_after_a_bounded_wait() -> None:
    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(1.0)  # longer than the poller's 0.2 s bound
        return web.Response(text=VLLM)

    async def bad(request: web.Request) -> web.Response:
        return web.Response(text="not metrics at all {")

    app = web.Application()
    app.router.add_get("/slow", slow)
    app.router.add_get("/bad", bad)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    base = f"http://127.0.0.1:{runner.addresses[0][1]}"
    seen: list[UpstreamLoad] = []
    try:
        for url in (base + "/slow", base + "/bad", base + "/missing", "http://127.0.0.1:9/metrics"):
            poller = UpstreamMetricsPoller("vllm", url, lambda load, _: seen.append(load), clock=SystemClock(),
                                           interval_s=30.0, timeout_s=0.2)
            poller.start()
            try:
                started = asyncio.get_running_loop().time()
                assert await asyncio.wait_for(poller.poll_once(), 5) is None
                assert asyncio.get_running_loop().time() - started < 2.0
                assert poller.state["status"] == "degraded" and poller.state["last_error"]
            finally:
                await poller.stop()
    finally:
        await runner.cleanup()
    assert seen == []


async def test_the_mock_batching_server_is_read_through_its_metrics() -> None:
    runner, port = await start_mock(MockConfig(behaviour="batching", max_num_seqs=4))
    seen: list[UpstreamLoad] = []
    got = asyncio.Event()

    def on_load(load: UpstreamLoad, _: float) -> None:
        seen.append(load)
        got.set()

    poller = UpstreamMetricsPoller("vllm", f"http://127.0.0.1:{port}/metrics", on_load, clock=SystemClock(),
                                   interval_s=0.05)
    try:
        poller.start()
        async with asyncio.timeout(5):
            await got.wait()
        assert seen[0] == UpstreamLoad(0.0, 0.0, 0.0)
        assert poller.state["status"] == "ok"
    finally:
        await poller.stop()
        await runner.cleanup()
