"""Pacing from rate-limit headers, live: a gateway process in front of ``seawall mock-upstream
--behaviour hosted`` (a real process on 127.0.0.1) learns the per-key budget from the headers and
its first 429s, then sends nothing the budget has no room for: the mock counts no further 429."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.harness import Gateway, Proc, mock_stats, start_gateway, start_mock

pytestmark = pytest.mark.e2e

REQUESTS_PER_MINUTE = 600  # enforced per second, as providers quantize it: 10 a second


@pytest.fixture(scope="module")
def hosted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Proc, Gateway]]:
    tmp: Path = tmp_path_factory.mktemp("pacing")
    mock = start_mock(tmp, "--behaviour", "hosted", "--requests-per-minute", str(REQUESTS_PER_MINUTE),
                      "--base-latency-s", "0.005", "--tokens-per-s", "2000", "--seed", "1")
    # One attempt per request: every 429 the mock counts is one the gateway chose to send.
    config = {"models": [{"name": "chat", "deployments": [{"name": "hosted", "base_url": mock.url + "/v1"}]}],
              "resilience": {"max_attempts": 1}}
    gw = start_gateway(tmp, config)
    try:
        yield mock, gw
    finally:
        gw.stop()
        mock.stop()


async def _send(url: str, key: str, n: int, every_s: float) -> list[int]:
    """``n`` requests, one every ``every_s`` seconds (0: all at once), each in its own task."""
    async with httpx.AsyncClient(timeout=10) as client:
        async def one() -> int:
            r = await client.post(url + "/v1/chat/completions", headers={"authorization": f"Bearer {key}"},
                                  json={"model": "chat", "max_tokens": 8,
                                        "messages": [{"role": "user", "content": "hi"}]})
            return r.status_code
        tasks = []
        for _ in range(n):
            tasks.append(asyncio.ensure_future(one()))
            await asyncio.sleep(every_s)
        return list(await asyncio.gather(*tasks))


def test_no_429_bound_sends_once_the_budget_is_learned(hosted: tuple[Proc, Gateway]) -> None:
    mock, gw = hosted
    key = gw.keys["enterprise"]
    # Learning: three times the per-second budget at once; the first 429 says what a request costs.
    asyncio.run(_send(gw.url, key, 30, 0.0))
    time.sleep(1.1)
    httpx.post(mock.url + "/mock/reset-stats", timeout=5)
    statuses = asyncio.run(_send(gw.url, key, 60, 0.05))  # twice the budget for three seconds
    ok = statuses.count(200)
    stats = mock_stats(mock.url)
    assert stats["rejected_429"] == 0, stats
    assert stats["served"] == ok
    assert ok >= 20  # the budget is used, not only guarded (about 10 a second over ~3 s)
