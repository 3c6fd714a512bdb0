"""The mock's handler wired to its clock and RNG, in-process on loopback with a fake clock.

The fake clock records every sleep and advances instantly, so these check the latency model's
wiring (which waits happen, how long, how many chunks) in milliseconds of real time.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import msgspec
import pytest
from aiohttp import web

from seawall.env import SystemRng
from seawall.mock import MOCK_KEY, MockConfig, create_app, start_mock, upstream_of
from seawall.providers import sse

CHAT = "/v1/chat/completions"
BODY = {"model": "mock-chat", "messages": [{"role": "user", "content": "hello"}]}


class FakeClock:
    """Advances by exactly what is slept; yields once so other tasks run."""

    def __init__(self) -> None:
        self.t = 100.0
        self.sleeps: list[float] = []

    def now(self) -> float:
        return self.t

    def wall(self) -> float:
        return 1_700_000_000.0 + self.t

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.t += seconds
        await asyncio.sleep(0)


class GateClock(FakeClock):
    """Like FakeClock, but every sleep blocks until ``gate`` is set: requests stay in flight."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()
        self.sleeping = asyncio.Event()

    async def sleep(self, seconds: float) -> None:
        self.sleeping.set()
        await self.gate.wait()
        await super().sleep(seconds)


async def _start(config: MockConfig, clock: FakeClock) -> AsyncIterator[tuple[str, aiohttp.ClientSession]]:
    runner, port = await start_mock(config, clock=clock, rng=SystemRng(7))
    try:
        async with aiohttp.ClientSession(f"http://127.0.0.1:{port}") as session:
            yield f"http://127.0.0.1:{port}", session
    finally:
        await runner.cleanup()


@pytest.fixture
async def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def mock(clock: FakeClock) -> AsyncIterator[aiohttp.ClientSession]:
    async with asyncio.timeout(10):
        async for _, session in _start(MockConfig(), clock):
            yield session


def _events(raw: bytes) -> list[Any]:
    splitter = sse.EventSplitter()
    out = []
    for framed in splitter.feed(raw):
        data = sse.data_of(framed)
        out.append(data if data == b"[DONE]" else msgspec.json.decode(data))
    assert splitter.pending == b""
    return out


async def test_non_streaming_waits_the_whole_completion_once(
    mock: aiohttp.ClientSession, clock: FakeClock
) -> None:
    raw = msgspec.json.encode(BODY)
    async with mock.post(CHAT, data=raw) as resp:
        assert resp.status == 200
        body = await resp.json()
    assert clock.sleeps == [pytest.approx(0.02 + 15 / 200)]
    assert body["choices"][0]["message"]["content"] == " ".join(f"tok{i}" for i in range(16))
    assert body["usage"]["completion_tokens"] == 16
    assert body["usage"]["prompt_tokens"] == len(raw) // 4
    assert body["created"] == int(clock.wall())


async def test_streaming_paces_one_token_per_interval(mock: aiohttp.ClientSession, clock: FakeClock) -> None:
    async with mock.post(CHAT, json={**BODY, "stream": True, "max_tokens": 4}) as resp:
        assert resp.headers["Content-Type"].startswith("text/event-stream")
        events = _events(await resp.read())
    assert clock.sleeps == [pytest.approx(0.02)] + [pytest.approx(0.005)] * 3
    assert events[-1] == b"[DONE]"
    chunks = events[:-1]
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    pieces = [c["choices"][0]["delta"].get("content") for c in chunks[1:-1]]
    assert pieces == ["tok0", " tok1", " tok2", " tok3"]
    assert chunks[-1]["choices"][0] == {"index": 0, "delta": {}, "logprobs": None, "finish_reason": "length"}
    assert all("usage" not in c for c in chunks)  # only sent when include_usage asks for it


async def test_streaming_with_usage_ends_with_a_usage_chunk(mock: aiohttp.ClientSession) -> None:
    body = {**BODY, "stream": True, "stream_options": {"include_usage": True}}
    async with mock.post(CHAT, json=body) as resp:
        events = _events(await resp.read())
    chunks = events[:-1]
    assert all(c["usage"] is None for c in chunks[:-1])
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"]["completion_tokens"] == 16
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"


async def test_stall_pauses_the_stream_after_the_configured_chunks(clock: FakeClock) -> None:
    config = MockConfig(tokens_per_s=0.0, completion_tokens=6, stall_s=2.5, fault_after_chunks=2)
    async with asyncio.timeout(10):
        async for _, session in _start(config, clock):
            body = {**BODY, "stream": True, "mock": {"fault": "stall"}}
            async with session.post(CHAT, json=body) as resp:
                events = _events(await resp.read())
            stats = await (await session.get("/mock/stats")).json()
    assert clock.sleeps == [pytest.approx(0.02), pytest.approx(2.5)]
    assert len(events) == 1 + 6 + 1 + 1  # role, tokens, finish, [DONE]
    assert stats["stalls"] == 1


async def test_requests_beyond_capacity_get_429_with_retry_after() -> None:
    clock = GateClock()
    config = MockConfig(max_in_flight=1, tokens_per_s=0.0)
    async with asyncio.timeout(10):
        async for _, session in _start(config, clock):
            first = asyncio.create_task(session.post(CHAT, json=BODY))
            await clock.sleeping.wait()
            async with session.post(CHAT, json=BODY) as rejected:
                assert rejected.status == 429
                assert rejected.headers["retry-after-ms"] == "20"
                assert rejected.headers["retry-after"] == "1"
                assert rejected.headers["x-ratelimit-remaining-requests"] == "0"
                error = (await rejected.json())["error"]
            clock.gate.set()
            ok = await first
            assert ok.status == 200
            ok.release()
            stats = await (await session.get("/mock/stats")).json()
    assert error["code"] == "rate_limit_exceeded"
    assert error["type"] == "rate_limit_error"
    assert (stats["rejected_429"], stats["served"], stats["max_in_flight_seen"]) == (1, 1, 1)


async def test_client_disconnect_cancels_the_handler_and_is_counted() -> None:
    clock = GateClock()
    async with asyncio.timeout(10):
        async for url, session in _start(MockConfig(), clock):
            async with aiohttp.ClientSession(url) as doomed:
                pending = asyncio.create_task(doomed.post(CHAT, json=BODY))
                await clock.sleeping.wait()
                pending.cancel()
            for _ in range(400):  # the server notices the disconnect on its next loop turns
                stats = await (await session.get("/mock/stats")).json()
                if stats["cancelled"]:
                    break
                await asyncio.sleep(0.005)
    assert stats["cancelled"] == 1
    assert stats["in_flight"] == 0
    assert stats["served"] == 0


async def test_seeded_error_rate_gives_a_reproducible_sequence(clock: FakeClock) -> None:
    config = MockConfig(error_rate=0.5, tokens_per_s=0.0)
    expected_rng = SystemRng(7)
    expected = [500 if expected_rng.random() < 0.5 else 200 for _ in range(20)]
    async with asyncio.timeout(10):
        async for _, session in _start(config, clock):
            statuses = []
            for _ in range(20):
                async with session.post(CHAT, json=BODY) as resp:
                    statuses.append(resp.status)
                    if resp.status == 500:
                        assert (await resp.json())["error"]["type"] == "server_error"
            stats = await (await session.get("/mock/stats")).json()
    assert statuses == expected
    assert stats["errors_500"] == expected.count(500)


async def test_bad_requests_get_openai_400s(mock: aiohttp.ClientSession) -> None:
    async with mock.post(CHAT, data=b"{not json") as resp:
        assert resp.status == 400
        assert (await resp.json())["error"]["code"] == "invalid_json"
    async with mock.post(CHAT, json={**BODY, "mock": {"fault": "meteor"}}) as resp:
        assert resp.status == 400
        assert (await resp.json())["error"]["param"] == "mock"
    async with mock.post(CHAT, json=BODY, headers={"x-mock-latency-s": "slow"}) as resp:
        assert resp.status == 400
    async with mock.post("/v1/embeddings", json={"model": "e", "input": "x", "dimensions": 0}) as resp:
        assert resp.status == 400
        assert (await resp.json())["error"]["param"] == "dimensions"
    async with mock.get("/v1/nothing") as resp:
        assert resp.status == 404
    stats = await (await mock.get("/mock/stats")).json()
    assert stats["invalid_400"] == 4
    assert stats["by_path"]["/v1/nothing"] == 1


async def test_latency_override_header_replaces_base_latency(
    mock: aiohttp.ClientSession, clock: FakeClock
) -> None:
    async with mock.post(CHAT, json={**BODY, "max_tokens": 1}, headers={"x-mock-latency-s": "0.7"}) as resp:
        assert resp.status == 200
    assert clock.sleeps == [pytest.approx(0.7)]


async def test_config_endpoint_validates_and_applies_changes(mock: aiohttp.ClientSession) -> None:
    async with mock.post("/mock/config", json={"max_in_flight": 0, "base_latency_s": 0}) as resp:
        assert resp.status == 200
        assert (await resp.json())["max_in_flight"] == 0
    async with mock.post(CHAT, json=BODY) as resp:
        assert resp.status == 429  # capacity zero rejects everything
    async with mock.post("/mock/config", json={"max_inflight": 3}) as resp:
        assert resp.status == 400
        assert "unknown mock config field" in (await resp.json())["error"]["message"]
    async with mock.post("/mock/config", json={"error_rate": 2}) as resp:
        assert resp.status == 400
    async with mock.post("/mock/config", data=b"[1]") as resp:
        assert resp.status == 400
    current = await (await mock.get("/mock/config")).json()
    assert (current["max_in_flight"], current["error_rate"]) == (0, 0.0)
    reset = await (await mock.post("/mock/reset-stats")).json()
    assert reset["rejected_429"] == 0
    assert reset["by_path"] == {}


async def test_embeddings_and_models(mock: aiohttp.ClientSession) -> None:
    body = {"model": "mock-embed", "input": ["a", "b", "a"], "dimensions": 5}
    async with mock.post("/v1/embeddings", json=body) as resp:
        out = await resp.json()
    vectors = [d["embedding"] for d in out["data"]]
    assert [len(v) for v in vectors] == [5, 5, 5]
    assert vectors[0] == vectors[2] != vectors[1]
    assert [d["index"] for d in out["data"]] == [0, 1, 2]
    assert out["usage"] == {"prompt_tokens": 3, "total_tokens": 3}
    models = await (await mock.get("/v1/models")).json()
    assert [m["id"] for m in models["data"]] == ["mock-chat", "mock-embed"]


async def test_create_app_serves_the_same_handler_through_an_app_runner(clock: FakeClock) -> None:
    app = create_app(MockConfig(tokens_per_s=0.0), clock=clock)
    runner = web.AppRunner(app, handler_cancellation=True)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        async with asyncio.timeout(10), aiohttp.ClientSession() as session:
            async with session.post(f"http://127.0.0.1:{port}{CHAT}", json=BODY) as resp:
                assert resp.status == 200
    finally:
        await runner.cleanup()
    assert app[MOCK_KEY].stats.served == 1


async def test_upstream_of_exposes_the_running_handler(clock: FakeClock) -> None:
    runner, _ = await start_mock(MockConfig(), clock=clock)
    try:
        upstream = upstream_of(runner)
        assert upstream.config == MockConfig()
        assert upstream.stats.served == 0
    finally:
        await runner.cleanup()


# -- Anthropic Messages ----------------------------------------------------------------------------

MESSAGES = "/v1/messages"
A_HEADERS = {"anthropic-version": "2023-06-01", "x-api-key": "sk-ant-test"}
A_BODY = {"model": "mock-claude", "max_tokens": 64, "messages": [{"role": "user", "content": "hello"}]}


def _anthropic_events(raw: bytes) -> list[tuple[str, Any]]:
    splitter = sse.EventSplitter()
    out = []
    for framed in splitter.feed(raw):
        name = framed.split(b"\n", 1)[0]
        assert name.startswith(b"event: ")
        data = msgspec.json.decode(sse.data_of(framed))
        assert data["type"] == name[len(b"event: "):].decode()
        out.append((data["type"], data))
    assert splitter.pending == b""
    return out


async def test_messages_answer_one_message_after_the_whole_completion(
    mock: aiohttp.ClientSession, clock: FakeClock
) -> None:
    raw = msgspec.json.encode(A_BODY)
    async with mock.post(MESSAGES, data=raw, headers=A_HEADERS) as resp:
        assert resp.status == 200
        assert not any(h.startswith("anthropic-ratelimit") for h in resp.headers)  # no capacity set
        body = await resp.json()
    assert clock.sleeps == [pytest.approx(0.02 + 15 / 200)]
    assert body["type"] == "message" and body["role"] == "assistant" and body["id"].startswith("msg_")
    assert body["content"] == [{"type": "text", "text": " ".join(f"tok{i}" for i in range(16))}]
    assert (body["stop_reason"], body["stop_sequence"]) == ("end_turn", None)
    assert body["usage"] == {"input_tokens": len(raw) // 4, "output_tokens": 16}
    assert body["model"] == "mock-claude"


async def test_messages_stream_anthropics_event_sequence_paced_like_chat(
    mock: aiohttp.ClientSession, clock: FakeClock
) -> None:
    body = {**A_BODY, "stream": True, "max_tokens": 3}
    async with mock.post(MESSAGES, json=body, headers=A_HEADERS) as resp:
        assert resp.headers["Content-Type"].startswith("text/event-stream")
        raw = await resp.read()
    assert clock.sleeps == [pytest.approx(0.02)] + [pytest.approx(0.005)] * 2
    events = _anthropic_events(raw)
    assert [kind for kind, _ in events] == [
        "message_start", "content_block_start", "ping",
        "content_block_delta", "content_block_delta", "content_block_delta",
        "content_block_stop", "message_delta", "message_stop",
    ]
    assert events[0][1]["message"]["usage"]["output_tokens"] == 1
    texts = [d["delta"]["text"] for kind, d in events if kind == "content_block_delta"]
    assert texts == ["tok0", " tok1", " tok2"]
    assert events[-2][1]["delta"]["stop_reason"] == "max_tokens"
    assert events[-2][1]["usage"] == {"output_tokens": 3}


async def test_messages_refusals_are_in_anthropics_format(mock: aiohttp.ClientSession) -> None:
    async with mock.post(MESSAGES, json=A_BODY) as resp:  # no anthropic-version header
        assert resp.status == 400
        assert (await resp.json())["error"]["message"].startswith("anthropic-version")
    async with mock.post(MESSAGES, json={**A_BODY, "max_tokens": 0}, headers=A_HEADERS) as resp:
        assert resp.status == 400
        body = await resp.json()
    message = "max_tokens: is required and must be an integer >= 1"
    assert body == {"type": "error", "error": {"type": "invalid_request_error", "message": message}}
    async with mock.post(MESSAGES, json=A_BODY, headers={**A_HEADERS, "x-mock-fault": "error"}) as resp:
        assert resp.status == 500
        assert (await resp.json())["error"]["type"] == "api_error"
    stats = await (await mock.get("/mock/stats")).json()
    assert (stats["invalid_400"], stats["errors_500"]) == (2, 1)


async def test_messages_429_at_capacity_with_anthropic_rate_limit_headers() -> None:
    clock = GateClock()
    config = MockConfig(max_in_flight=1, tokens_per_s=0.0)
    async with asyncio.timeout(10):
        async for _, session in _start(config, clock):
            first = asyncio.create_task(session.post(MESSAGES, json=A_BODY, headers=A_HEADERS))
            await clock.sleeping.wait()
            async with session.post(MESSAGES, json=A_BODY, headers=A_HEADERS) as rejected:
                assert rejected.status == 429
                headers = rejected.headers
                body = await rejected.json()
            clock.gate.set()
            ok = await first
            assert ok.status == 200
            assert ok.headers["anthropic-ratelimit-requests-limit"] == "1"
            assert "x-ratelimit-limit-requests" not in ok.headers
            ok.release()
    assert headers["retry-after"] == "1" and headers["retry-after-ms"] == "20"
    assert headers["anthropic-ratelimit-requests-remaining"] == "0"
    assert body["type"] == "error" and body["error"]["type"] == "rate_limit_error"


@pytest.mark.parametrize(("path", "headers"), [(MESSAGES, A_HEADERS), (CHAT, {})])
async def test_injected_529_is_an_overload_on_both_apis(
    mock: aiohttp.ClientSession, clock: FakeClock, path: str, headers: dict[str, str]
) -> None:
    body = {**A_BODY, "mock": {"fault": "529"}}
    async with mock.post(path, json=body, headers=headers) as resp:
        assert resp.status == 529
        assert resp.headers["retry-after-ms"] == str(round((0.02 + 15 / 200) * 1000))
        error = (await resp.json())["error"]
    assert error["type"] == ("overloaded_error" if path == MESSAGES else "service_unavailable")
    assert clock.sleeps == []  # refused at once, like a 429
    stats = await (await mock.get("/mock/stats")).json()
    assert (stats["overloaded_529"], stats["rejected_429"], stats["in_flight"]) == (1, 0, 0)


async def test_messages_reset_mid_stream_after_the_configured_deltas(clock: FakeClock) -> None:
    config = MockConfig(tokens_per_s=0.0, fault_after_chunks=2)
    received = b""
    async with asyncio.timeout(10):
        async for _, session in _start(config, clock):
            body = {**A_BODY, "stream": True, "mock": {"fault": "reset"}}
            with pytest.raises(aiohttp.ClientPayloadError):
                async with session.post(MESSAGES, json=body, headers=A_HEADERS) as resp:
                    async for chunk in resp.content.iter_any():
                        received += chunk
            stats = await (await session.get("/mock/stats")).json()
    assert received.count(b"event: content_block_delta") == 2
    assert b"message_stop" not in received
    assert (stats["resets"], stats["served"]) == (1, 0)


# -- behaviours: continuous batching and a hosted provider (real clock, short durations) ----------


class RealClock(FakeClock):
    """The system's monotonic clock: concurrent requests share time as they do on a server."""

    def now(self) -> float:
        return asyncio.get_running_loop().time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


async def test_batching_never_refuses_queues_fifo_and_serves_vllm_metrics() -> None:
    config = MockConfig(behaviour="batching", max_num_seqs=2, tokens_per_s=500.0, completion_tokens=10,
                        base_latency_s=0.0, prefill_tokens_per_s=1e6)
    async with asyncio.timeout(20):
        async for _, session in _start(config, RealClock()):

            async def one(stream: bool, session: aiohttp.ClientSession = session) -> tuple[int, float]:
                started = asyncio.get_running_loop().time()
                async with session.post(CHAT, json={**BODY, "stream": stream}) as resp:
                    await resp.read()
                    return resp.status, asyncio.get_running_loop().time() - started

            results = await asyncio.gather(*(one(i % 2 == 0) for i in range(8)))
            metrics = await (await session.get("/metrics")).text()
            stats = await (await session.get("/mock/stats")).json()
    assert [status for status, _ in results] == [200] * 8
    # 8 requests through 2 sequences at a time: the last pair waited for three pairs before it
    assert max(t for _, t in results) >= 3 * 9 / 500
    assert stats["rejected_429"] == 0 and stats["served"] == 8
    for name in ("vllm:num_requests_running", "vllm:num_requests_waiting", "vllm:gpu_cache_usage_perc",
                 "vllm:time_to_first_token_seconds_count"):
        assert name in metrics
    assert 'vllm:time_to_first_token_seconds_count{model_name="mock-chat"} 8' in metrics
    assert 'vllm:num_requests_running{model_name="mock-chat"} 0' in metrics


async def test_hosted_rate_limits_per_key_with_openai_and_anthropic_headers() -> None:
    config = MockConfig(behaviour="hosted", requests_per_minute=120, tokens_per_minute=100_000,
                        tokens_per_s=0.0, base_latency_s=0.0)
    headers = {"authorization": "Bearer k1"}
    async with asyncio.timeout(20):
        # Time stands still (nothing here sleeps): on the real clock a second could turn between the
        # requests and refill the per-second bucket (seen failing under load).
        async for _, session in _start(config, FakeClock()):
            for _ in range(2):
                async with session.post(CHAT, json=BODY, headers=headers) as ok:
                    assert ok.status == 200
                    remaining = ok.headers["x-ratelimit-remaining-requests"]
            async with session.post(CHAT, json=BODY, headers=headers) as refused:
                assert refused.status == 429
                assert refused.headers["x-ratelimit-limit-requests"] == "120"
                assert refused.headers["x-ratelimit-remaining-requests"] == "0"
                assert refused.headers["x-ratelimit-reset-requests"].endswith("s")
                # 120 a minute enforced per second: 2 a second, one back within half a second
                assert 0 < int(refused.headers["retry-after-ms"]) <= 500
                assert refused.headers["x-ratelimit-limit-tokens"] == "100000"
                assert (await refused.json())["error"]["type"] == "rate_limit_error"
            async with session.post(CHAT, json=BODY, headers={"authorization": "Bearer k2"}) as other:
                assert other.status == 200  # the limit is per key
            messages = {"model": "m", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}
            anthropic_headers = {"x-api-key": "k3", "anthropic-version": "2023-06-01"}
            async with session.post("/v1/messages", json=messages, headers=anthropic_headers) as msg:
                assert msg.status == 200
                assert msg.headers["anthropic-ratelimit-requests-limit"] == "120"
                assert msg.headers["anthropic-ratelimit-requests-reset"].endswith("Z")
    assert remaining == "0"


async def test_hosted_overload_is_503_on_openai_and_529_on_anthropic() -> None:
    config = MockConfig(behaviour="hosted", overloaded_rate=1.0, tokens_per_s=0.0, base_latency_s=0.0)
    async with asyncio.timeout(20):
        async for _, session in _start(config, RealClock()):
            async with session.post(CHAT, json=BODY) as chat:
                assert chat.status == 503
            messages = {"model": "m", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}
            async with session.post("/v1/messages", json=messages,
                                    headers={"anthropic-version": "2023-06-01"}) as msg:
                assert msg.status == 529
                assert (await msg.json())["error"]["type"] == "overloaded_error"


async def test_behaviour_and_slowdown_change_through_the_config_endpoint(clock: FakeClock) -> None:
    async with asyncio.timeout(10):
        async for _, session in _start(MockConfig(), clock):
            resp = await session.post("/mock/config", json={"behaviour": "nope"})
            assert resp.status == 400
            resp = await session.post("/mock/config", json={"behaviour": "batching", "slowdown": 2.0})
            assert resp.status == 200 and (await resp.json())["behaviour"] == "batching"
            async with session.post(CHAT, json=BODY) as ok:
                assert ok.status == 200
