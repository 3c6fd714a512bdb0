"""Chaos on loopback: one fault per scenario, load from clients that never retry, and what got through.

Each scenario is a model group of two deployments in separate mock processes: the faulty one as the
primary (priority 0, so every request goes there first until its breaker says otherwise) and a
healthy fallback (priority 1). A closed loop of ``CONCURRENCY`` raw-HTTP clients (the SDKs' headers,
no retries) sends ``REQUESTS`` requests, half of them streams, bounded by ``SCENARIO_S`` seconds.

Measured per scenario, and printed (``pytest -s``):

- success: requests answered in full / requests sent. Every request here had a healthy deployment,
  so every non-streaming request and every stream that failed before its first byte must succeed.
  A stream that already started cannot be retried transparently; it must end with a well-formed
  error event (never a silent close), and such failures must stop once the faulty deployment's
  breaker opens (only half-open probes may still break a stream).
- retry amplification: upstream attempts / client requests, counted twice: by the gateway's ledger
  (one row per request, listing every deployment tried: this sees attempts on a dead port too) and
  by the mocks (``by_path`` counts, faulty + healthy). Target <= 1.2.
"""

from __future__ import annotations

import asyncio
import re
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import msgspec
import pytest

from tests.e2e.harness import Gateway, Proc, free_port, mock_stats, start_gateway, start_mock

pytestmark = pytest.mark.e2e

CHAT = "/v1/chat/completions"
REQUESTS = 4000
CONCURRENCY = 12
SCENARIO_S = 12.0  # the load loop stops here even if REQUESTS were not all sent
CLIENT_TIMEOUT_S = 10.0
MAX_AMPLIFICATION = 1.2
# Fast, healthy upstream behaviour shared by both mocks; a scenario's flags come after and win.
MOCK_BASE = ("--base-latency-s", "0.005", "--tokens-per-s", "2000", "--completion-tokens", "8")
# Breakers that re-probe within a run of a few seconds (defaults: 5 s, then up to 60 s), so every
# scenario also covers half-open probes and, for the 50% one, re-closing and re-tripping.
OPEN_S, MAX_OPEN_S = 0.5, 1.0
RESILIENCE = {"breaker": {"open_s": OPEN_S, "max_open_s": MAX_OPEN_S}}


@dataclass(frozen=True)
class Scenario:
    name: str
    mock_args: tuple[str, ...] | None  # None: the faulty deployment is a port nobody listens on
    deployment: dict[str, Any] = field(default_factory=dict)  # extra settings for the faulty one
    mid_stream: bool = False  # the fault can break streams that already started


SCENARIOS = [
    Scenario("down", None),
    Scenario("slow", ("--base-latency-s", "10"),
             {"timeouts": {"connect_s": 1.0, "read_s": 0.5}, "ttft_timeout_s": 0.5}),
    Scenario("errors_50pct", ("--error-rate", "0.5", "--seed", "7")),
    Scenario("reset_mid_stream", ("--reset-rate", "1", "--fault-after-chunks", "3"), mid_stream=True),
    Scenario("storm_429", ("--max-in-flight", "0")),
]


@dataclass
class Tally:
    sent: int = 0
    ok: int = 0
    failed: dict[str, int] = field(default_factory=dict)  # no usable answer at all, by cause
    broken_with_error_event: list[float] = field(default_factory=list)  # seconds into the run
    broken_silently: int = 0
    elapsed_s: float = 0.0

    def fail(self, cause: str) -> None:
        self.failed[cause] = self.failed.get(cause, 0) + 1

    @property
    def failures(self) -> int:
        return sum(self.failed.values()) + len(self.broken_with_error_event) + self.broken_silently


def classify_stream(body: bytes) -> str:
    """``ok`` (chunks, a finish reason, ``[DONE]``), ``error_event`` (chunks then one well-formed
    OpenAI error event, nothing after it) or ``silent`` (anything else: a close without either)."""
    events = [e for e in body.split(b"\n\n") if e.strip()]
    if not events:
        return "silent"
    *head, last = events
    finished = False
    for ev in head:
        if not ev.startswith(b"data: {"):
            return "silent"
        chunk = msgspec.json.decode(ev[6:])
        if "error" in chunk or chunk.get("object") != "chat.completion.chunk":
            return "silent"
        finished = finished or any(c.get("finish_reason") for c in chunk["choices"])
    if last == b"data: [DONE]":
        return "ok" if finished else "silent"
    if last.startswith(b'data: {"error"'):
        err = msgspec.json.decode(last[6:])["error"]
        if {"message", "type", "code"} <= set(err) and err["message"]:
            return "error_event"
    return "silent"


async def one_request(session: aiohttp.ClientSession, url: str, headers: dict[str, str], stream: bool,
                      tally: Tally, started: float) -> None:
    body = {"model": "chaos", "messages": [{"role": "user", "content": "chaos"}], "max_tokens": 8,
            "stream": stream}
    try:
        async with session.post(url, json=body, headers=headers) as resp:
            data = await resp.read()
            if resp.status != 200:
                tally.fail(f"{'stream' if stream else 'plain'}_{resp.status}")
                return
    except (TimeoutError, aiohttp.ClientError) as exc:
        # A stream whose connection is cut without an error event is a silent end.
        if stream and isinstance(exc, aiohttp.ClientPayloadError):
            tally.broken_silently += 1
        else:
            tally.fail(type(exc).__name__)
        return
    if not stream:
        completion = msgspec.json.decode(data)
        if completion.get("object") == "chat.completion" and completion["choices"][0]["message"]["content"]:
            tally.ok += 1
        else:
            tally.fail("plain_malformed")
        return
    kind = classify_stream(data)
    if kind == "ok":
        tally.ok += 1
    elif kind == "error_event":
        tally.broken_with_error_event.append(time.monotonic() - started)
    else:
        tally.broken_silently += 1


async def closed_loop(gw: Gateway) -> Tally:
    """``CONCURRENCY`` workers, each sending its next request when the last one ended; no retries."""
    tally = Tally()
    url = gw.url + CHAT
    headers = {"authorization": f"Bearer {gw.keys['enterprise']}", "x-stainless-retry-count": "0"}
    timeout = aiohttp.ClientTimeout(total=CLIENT_TIMEOUT_S)
    started = time.monotonic()
    async with aiohttp.ClientSession(timeout=timeout, connector=aiohttp.TCPConnector(limit=0)) as session:
        async def worker() -> None:
            while tally.sent < REQUESTS and time.monotonic() - started < SCENARIO_S:
                tally.sent += 1
                await one_request(session, url, headers, tally.sent % 2 == 0, tally, started)

        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    tally.elapsed_s = time.monotonic() - started
    return tally


def ledger_attempts(db: Path, expected_rows: int, timeout_s: float = 10.0) -> tuple[int, int, dict[str, int]]:
    """(rows, attempts, attempts by deployment) from the usage ledger, once it has every request."""
    deadline = time.monotonic() + timeout_s
    rows: list[tuple[str]] = []
    while time.monotonic() < deadline:
        with sqlite3.connect(db, timeout=5) as conn:
            rows = conn.execute("SELECT deployments FROM usage WHERE model = 'chaos'").fetchall()
        if len(rows) >= expected_rows:
            break
        time.sleep(0.2)
    by_dep: dict[str, int] = {}
    for (deps,) in rows:
        for name in filter(None, deps.split(",")):
            by_dep[name] = by_dep.get(name, 0) + 1
    return len(rows), sum(by_dep.values()), by_dep


def metric(gw: Gateway, name: str, labels: str = "") -> float:
    text = httpx.get(gw.url + "/metrics", timeout=5).text
    match = re.search(rf"^{re.escape(name)}{re.escape(labels)} (\S+)$", text, re.M)
    assert match, f"{name}{labels} not in /metrics"
    return float(match.group(1))


@pytest.fixture(scope="module")
def healthy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proc]:
    proc = start_mock(tmp_path_factory.mktemp("chaos-healthy"), *MOCK_BASE)
    yield proc
    proc.stop()


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.name)
def test_fault_with_a_healthy_fallback(scenario: Scenario, healthy: Proc, tmp_path: Path) -> None:
    faulty: Proc | None = None
    if scenario.mock_args is not None:
        faulty = start_mock(tmp_path, *MOCK_BASE, *scenario.mock_args)
        faulty_url = faulty.url
    else:
        faulty_url = f"http://127.0.0.1:{free_port()}"
    config = {"models": [{"name": "chaos", "deployments": [
        {"name": "faulty", "base_url": faulty_url + "/v1", "priority": 0, **scenario.deployment},
        {"name": "healthy", "base_url": healthy.url + "/v1", "priority": 1},
    ]}], "resilience": RESILIENCE}
    gw = start_gateway(tmp_path, config, tiers=("enterprise",))
    try:
        httpx.post(healthy.url + "/mock/reset-stats", timeout=5)
        tally = asyncio.run(closed_loop(gw))
        rows, attempts, by_dep = ledger_attempts(tmp_path / "seawall.db", tally.sent)
        mock_attempts = mock_stats(healthy.url)["by_path"].get(CHAT, 0)
        if faulty is not None:
            mock_attempts += mock_stats(faulty.url)["by_path"].get(CHAT, 0)
        gauge = metric(gw, "seawall_retry_amplification")
        breaker = metric(gw, "seawall_breaker_state", '{deployment="faulty"}')
    finally:
        gw.stop()
        if faulty is not None:
            faulty.stop()

    amplification = attempts / tally.sent
    mock_amplification = mock_attempts / tally.sent
    broken = tally.broken_with_error_event
    late = [t for t in broken if t > 1.0]
    print(f"\nchaos {scenario.name}: ok {tally.ok}/{tally.sent} ({100 * tally.ok / tally.sent:.3f}%) in "
          f"{tally.elapsed_s:.1f}s; failed {tally.failed}; mid-stream error events {len(broken)} "
          f"(after 1 s: {len(late)}); silent ends {tally.broken_silently}; amplification ledger "
          f"{amplification:.3f} (attempts {by_dep}), mocks {mock_amplification:.3f}, gauge {gauge:.3f}; "
          f"breaker state {breaker:.0f}")

    assert tally.sent >= 1000, "the load loop was too slow to say anything"
    assert rows == tally.sent, "the ledger must hold one row per request"
    # Everything that could be failed over was: no request without an answer.
    assert tally.failed == {}, tally.failed
    assert tally.broken_silently == 0
    if scenario.mid_stream:
        # Only streams already under way may break: the first few before the breaker opened (the
        # in-flight ones included), then at most one half-open probe per open period.
        probes = tally.elapsed_s / MAX_OPEN_S + 2
        assert len(broken) <= CONCURRENCY + 5 + probes, broken
        assert len(late) <= probes, late
        assert tally.ok >= tally.sent - len(broken)
    else:
        assert broken == []
    assert amplification <= MAX_AMPLIFICATION
    assert mock_amplification <= MAX_AMPLIFICATION
    if faulty is not None:
        assert mock_attempts <= attempts, "the mocks saw attempts the ledger does not list"
