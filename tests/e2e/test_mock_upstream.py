"""The mock upstream as a real process on loopback, driven by the official SDK and raw aiohttp."""

from __future__ import annotations

import asyncio
import itertools
import math
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import aiohttp
import anthropic
import httpx
import openai
import pytest

pytestmark = pytest.mark.e2e

CHAT = "/v1/chat/completions"
BODY: dict[str, Any] = {"model": "mock-chat", "messages": [{"role": "user", "content": "hello"}]}
ANNOUNCE = "seawall mock upstream listening on "
STARTUP_TIMEOUT_S = 15.0
TEST_TIMEOUT_S = 10.0


def _spawn(*flags: str) -> tuple[subprocess.Popen[str], str]:
    """Start ``python -m seawall.mock --port 0`` and read the announced URL."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "seawall.mock", "--port", "0", *flags],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], STARTUP_TIMEOUT_S)
    line = proc.stdout.readline() if ready else ""
    if not line.startswith(ANNOUNCE):
        proc.kill()
        _, err = proc.communicate(timeout=5)
        raise AssertionError(f"mock did not start: {line!r} {err!r}")
    return proc, line[len(ANNOUNCE) :].strip()


def _stop(proc: subprocess.Popen[str]) -> tuple[int, str, str]:
    proc.send_signal(signal.SIGTERM)
    try:
        out, err = proc.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
    return proc.returncode, out, err


@pytest.fixture(scope="module")
def mock_url() -> Iterator[str]:
    proc, url = _spawn("--base-latency-s", "0.005", "--tokens-per-s", "2000", "--seed", "1")
    try:
        yield url
    finally:
        _stop(proc)


@pytest.fixture(autouse=True)
def fresh_mock(mock_url: str) -> Iterator[None]:
    """Each test starts from the process's original config and zeroed stats."""
    with httpx.Client(base_url=mock_url, timeout=5) as client:
        original = client.get("/mock/config").json()
        client.post("/mock/reset-stats").raise_for_status()
        yield
        client.post("/mock/config", json=original).raise_for_status()


@pytest.fixture
def sdk(mock_url: str) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=f"{mock_url}/v1", api_key="sk-test", max_retries=0, timeout=5) as client:
        yield client


def _words(n: int) -> str:
    return " ".join(f"tok{i}" for i in range(n))


async def _configure(session: aiohttp.ClientSession, **changes: Any) -> None:
    async with session.post("/mock/config", json=changes) as resp:
        assert resp.status == 200, await resp.text()


async def _stats(session: aiohttp.ClientSession) -> dict[str, Any]:
    async with session.get("/mock/stats") as resp:
        stats: dict[str, Any] = await resp.json()
        return stats


async def _stats_when(session: aiohttp.ClientSession, key: str, value: int) -> dict[str, Any]:
    """Poll until ``stats[key] == value`` (the server notices disconnects asynchronously)."""
    for _ in range(200):
        stats = await _stats(session)
        if stats[key] == value and stats["in_flight"] == 0:
            return stats
        await asyncio.sleep(0.01)
    return stats


# -- the official SDK -----------------------------------------------------------------------------


def test_sdk_chat_completion(sdk: openai.OpenAI) -> None:
    result = sdk.chat.completions.create(model="mock-chat", messages=[{"role": "user", "content": "hi"}])
    assert result.object == "chat.completion"
    assert result.model == "mock-chat"
    assert result.choices[0].message.content == _words(16)
    assert result.choices[0].finish_reason == "stop"
    assert result.usage is not None
    assert result.usage.completion_tokens == 16
    assert result.usage.total_tokens == result.usage.prompt_tokens + 16


def test_sdk_streaming_with_include_usage(sdk: openai.OpenAI) -> None:
    stream = sdk.chat.completions.create(
        model="mock-chat",
        messages=[{"role": "user", "content": "hi"}],
        stream=True,
        stream_options={"include_usage": True},
        max_tokens=5,
    )
    chunks = list(stream)
    first, *middle, finish, usage = chunks
    assert first.choices[0].delta.role == "assistant"
    assert first.choices[0].delta.content == ""
    assert "".join(c.choices[0].delta.content or "" for c in middle) == _words(5)
    assert finish.choices[0].finish_reason == "length"
    assert usage.choices == []
    assert usage.usage is not None and usage.usage.completion_tokens == 5
    assert all(c.usage is None for c in chunks[:-1])
    assert len({c.id for c in chunks}) == 1


def test_sdk_embeddings_are_deterministic_with_asked_dimensions(sdk: openai.OpenAI) -> None:
    first = sdk.embeddings.create(model="mock-embed", input=["alpha", "beta"], dimensions=6)
    again = sdk.embeddings.create(model="mock-embed", input="alpha", dimensions=6, encoding_format="float")
    vectors = [d.embedding for d in first.data]
    assert [len(v) for v in vectors] == [6, 6]
    assert vectors[0] != vectors[1]
    assert math.fsum(x * x for x in vectors[0]) == pytest.approx(1.0, rel=1e-5)
    assert again.data[0].embedding == pytest.approx(vectors[0], rel=1e-5)  # base64 and float agree
    assert first.usage.prompt_tokens == 2


def test_sdk_models(sdk: openai.OpenAI) -> None:
    assert [m.id for m in sdk.models.list()] == ["mock-chat", "mock-embed"]


def test_sdk_sees_injected_500_from_body_or_header(sdk: openai.OpenAI) -> None:
    messages: Any = [{"role": "user", "content": "hi"}]
    with pytest.raises(openai.InternalServerError) as by_body:
        sdk.chat.completions.create(
            model="mock-chat", messages=messages, extra_body={"mock": {"fault": "error"}}
        )
    with pytest.raises(openai.InternalServerError):
        sdk.chat.completions.create(
            model="mock-chat", messages=messages, extra_headers={"x-mock-fault": "error"}
        )
    assert by_body.value.status_code == 500
    assert "server had an error" in by_body.value.message


# -- the official anthropic SDK on /v1/messages ---------------------------------------------------


@pytest.fixture
def claude(mock_url: str) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(base_url=mock_url, api_key="sk-ant-test", max_retries=0, timeout=5) as client:
        yield client


HELLO: Any = [{"role": "user", "content": "hi"}]


def test_anthropic_sdk_message(claude: anthropic.Anthropic) -> None:
    message = claude.messages.create(model="mock-claude", max_tokens=1024, messages=HELLO)
    assert message.type == "message" and message.role == "assistant"
    assert message.model == "mock-claude"
    assert [block.type for block in message.content] == ["text"]
    assert message.content[0].text == _words(16)  # type: ignore[union-attr]
    assert message.stop_reason == "end_turn"
    assert message.usage.output_tokens == 16 and message.usage.input_tokens > 0


def test_anthropic_sdk_stream_helper_accumulates_the_message(claude: anthropic.Anthropic) -> None:
    with claude.messages.stream(model="mock-claude", max_tokens=5, messages=HELLO) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == _words(5)
    assert final.content[0].text == _words(5)  # type: ignore[union-attr]
    assert final.stop_reason == "max_tokens"
    assert final.usage.output_tokens == 5


def test_anthropic_sdk_raw_stream_events(claude: anthropic.Anthropic) -> None:
    events = list(claude.messages.create(model="mock-claude", max_tokens=2, messages=HELLO, stream=True))
    assert [e.type for e in events] == [  # the SDK drops the ping
        "message_start", "content_block_start", "content_block_delta", "content_block_delta",
        "content_block_stop", "message_delta", "message_stop",
    ]


async def test_anthropic_async_sdk_stream(mock_url: str) -> None:
    async with anthropic.AsyncAnthropic(base_url=mock_url, api_key="k", max_retries=0, timeout=5) as client:
        async with client.messages.stream(model="mock-claude", max_tokens=3, messages=HELLO) as stream:
            pieces = [text async for text in stream.text_stream]
            final = await stream.get_final_message()
    assert "".join(pieces) == _words(3)
    assert final.usage.output_tokens == 3


def test_anthropic_sdk_sees_anthropic_errors(claude: anthropic.Anthropic, mock_url: str) -> None:
    with pytest.raises(anthropic.OverloadedError) as overloaded:
        claude.messages.create(model="m", max_tokens=5, messages=HELLO, extra_headers={"x-mock-fault": "529"})
    assert overloaded.value.status_code == 529
    with pytest.raises(anthropic.InternalServerError) as failed:
        claude.messages.create(model="m", max_tokens=5, messages=HELLO,
                               extra_body={"mock": {"fault": "error"}})
    assert failed.value.status_code == 500
    with pytest.raises(anthropic.BadRequestError) as bad:
        robot: Any = [{"role": "robot", "content": "hi"}]
        claude.messages.create(model="m", max_tokens=5, messages=robot)
    assert "messages.0.role" in bad.value.message
    httpx.post(f"{mock_url}/mock/config", json={"max_in_flight": 0}, timeout=5).raise_for_status()
    with pytest.raises(anthropic.RateLimitError) as limited:
        claude.messages.create(model="m", max_tokens=5, messages=HELLO)
    assert limited.value.response.headers["anthropic-ratelimit-requests-remaining"] == "0"
    assert int(limited.value.response.headers["retry-after"]) >= 1


# -- raw HTTP: capacity and faults ----------------------------------------------------------------


async def test_429_beyond_capacity_with_retry_after(mock_url: str) -> None:
    async with asyncio.timeout(TEST_TIMEOUT_S), aiohttp.ClientSession(mock_url) as session:
        await _configure(session, max_in_flight=2)
        slow = {**BODY, "mock": {"latency_s": 0.5}}

        async def call() -> tuple[int, dict[str, str], dict[str, Any]]:
            async with session.post(CHAT, json=slow) as resp:
                headers = {k.lower(): v for k, v in resp.headers.items()}
                return resp.status, headers, await resp.json()

        results = await asyncio.gather(*(call() for _ in range(5)))
        stats = await _stats(session)
    assert sorted(status for status, _, _ in results) == [200, 200, 429, 429, 429]
    rejected = [(headers, body) for status, headers, body in results if status == 429]
    for headers, body in rejected:
        assert int(headers["retry-after"]) >= 1
        assert int(headers["retry-after-ms"]) >= 1
        assert headers["x-ratelimit-remaining-requests"] == "0"
        assert body["error"]["code"] == "rate_limit_exceeded"
    assert (stats["rejected_429"], stats["served"], stats["max_in_flight_seen"]) == (3, 2, 2)


async def test_invalid_json_is_an_openai_400(mock_url: str) -> None:
    async with asyncio.timeout(TEST_TIMEOUT_S), aiohttp.ClientSession(mock_url) as session:
        async with session.post(CHAT, data=b'{"model": ') as resp:
            assert resp.status == 400
            error = (await resp.json())["error"]
    assert (error["type"], error["code"]) == ("invalid_request_error", "invalid_json")


async def test_prompts_far_beyond_aiohttps_default_body_limit_are_accepted(mock_url: str) -> None:
    body = {**BODY, "messages": [{"role": "user", "content": "y" * (5 * 1024 * 1024)}]}
    async with asyncio.timeout(TEST_TIMEOUT_S), aiohttp.ClientSession(mock_url) as session:
        async with session.post(CHAT, json=body) as resp:
            assert resp.status == 200
            usage = (await resp.json())["usage"]
    assert usage["prompt_tokens"] > 5 * 1024 * 1024 // 4


async def test_error_rate_from_config_answers_500(mock_url: str) -> None:
    async with asyncio.timeout(TEST_TIMEOUT_S), aiohttp.ClientSession(mock_url) as session:
        await _configure(session, error_rate=1.0)
        async with session.post(CHAT, json=BODY) as resp:
            assert resp.status == 500
            assert (await resp.json())["error"]["type"] == "server_error"
        assert (await _stats(session))["errors_500"] == 1


async def test_reset_before_the_response_is_a_connection_error(mock_url: str) -> None:
    async with asyncio.timeout(TEST_TIMEOUT_S), aiohttp.ClientSession(mock_url) as session:
        with pytest.raises(aiohttp.ClientConnectionError):
            async with session.post(CHAT, json=BODY, headers={"x-mock-fault": "reset"}) as resp:
                await resp.read()
        stats = await _stats(session)
    assert (stats["resets"], stats["served"], stats["cancelled"]) == (1, 0, 0)


async def test_reset_mid_stream_cuts_after_a_few_chunks(mock_url: str) -> None:
    lines: list[bytes] = []
    async with asyncio.timeout(TEST_TIMEOUT_S), aiohttp.ClientSession(mock_url) as session:
        with pytest.raises((aiohttp.ClientPayloadError, aiohttp.ClientConnectionError)):
            body = {**BODY, "stream": True, "mock": {"fault": "reset"}}
            async with session.post(CHAT, json=body) as resp:
                assert resp.status == 200
                async for line in resp.content:
                    if line.startswith(b"data:"):
                        lines.append(line)
        stats = await _stats(session)
    assert len(lines) == 1 + 3  # the role chunk, then fault_after_chunks=3 content chunks
    assert b"[DONE]" not in b"".join(lines)
    assert (stats["resets"], stats["cancelled"]) == (1, 0)  # our own abort is not a client leaving


async def test_stall_pauses_mid_stream_then_completes(mock_url: str) -> None:
    arrivals: list[float] = []
    async with asyncio.timeout(TEST_TIMEOUT_S), aiohttp.ClientSession(mock_url) as session:
        await _configure(session, stall_s=0.3, tokens_per_s=0)
        body = {**BODY, "stream": True}
        async with session.post(CHAT, json=body, headers={"x-mock-fault": "stall"}) as resp:
            async for line in resp.content:
                if line.startswith(b"data:"):
                    arrivals.append(time.monotonic())
                    last = line
        stats = await _stats(session)
    gaps = [b - a for a, b in itertools.pairwise(arrivals)]
    assert max(gaps) >= 0.28
    assert last.strip() == b"data: [DONE]"
    assert len(arrivals) == 1 + 16 + 1 + 1
    assert (stats["stalls"], stats["served"]) == (1, 1)


async def test_client_leaving_mid_stream_is_counted_as_cancelled(mock_url: str) -> None:
    async with asyncio.timeout(TEST_TIMEOUT_S), aiohttp.ClientSession(mock_url) as session:
        await _configure(session, tokens_per_s=20)  # 16 tokens take 0.75 s
        async with aiohttp.ClientSession(mock_url) as leaving:
            async with leaving.post(CHAT, json={**BODY, "stream": True}) as resp:
                assert (await resp.content.readline()).startswith(b"data:")
                resp.close()  # drop the connection mid-stream
        stats = await _stats_when(session, "cancelled", 1)
    assert stats["cancelled"] == 1
    assert stats["served"] == 0


async def test_client_timing_out_before_the_answer_is_counted_as_cancelled(mock_url: str) -> None:
    async with asyncio.timeout(TEST_TIMEOUT_S), aiohttp.ClientSession(mock_url) as session:
        short = aiohttp.ClientTimeout(total=0.2)
        with pytest.raises(asyncio.TimeoutError):
            async with session.post(CHAT, json={**BODY, "mock": {"latency_s": 5}}, timeout=short) as resp:
                await resp.read()
        stats = await _stats_when(session, "cancelled", 1)
    assert stats["cancelled"] == 1
    assert stats["served"] == 0


async def test_throughput_is_far_from_being_the_bottleneck(mock_url: str) -> None:
    """64 concurrent clients at 20 ms latency: Little's law allows 3200 req/s; demand a fraction."""
    concurrency, duration_s = 64, 1.0
    done = 0
    async with asyncio.timeout(TEST_TIMEOUT_S):
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(mock_url, connector=connector) as session:
            await _configure(session, base_latency_s=0.02, tokens_per_s=0)
            end = time.monotonic() + duration_s

            async def worker() -> None:
                nonlocal done
                while time.monotonic() < end:
                    async with session.post(CHAT, json=BODY) as resp:
                        await resp.read()
                        done += resp.status == 200

            start = time.monotonic()
            await asyncio.gather(*(worker() for _ in range(concurrency)))
            rate_per_s = done / (time.monotonic() - start)
            stats = await _stats(session)
    assert rate_per_s > 500
    assert stats["max_in_flight_seen"] >= concurrency // 2


# -- process behaviour ----------------------------------------------------------------------------


def test_process_is_quiet_per_request_and_stops_cleanly_on_sigterm() -> None:
    proc, url = _spawn("--base-latency-s", "0")
    try:
        with httpx.Client(base_url=url, timeout=5) as client:
            assert client.post(CHAT, json=BODY).status_code == 200
            assert client.post(CHAT, json=BODY, headers={"x-mock-fault": "error"}).status_code == 500
            assert client.post(CHAT, content=b"nope").status_code == 400
            with pytest.raises(httpx.TransportError):
                client.post(CHAT, json=BODY, headers={"x-mock-fault": "reset"})
    finally:
        code, out, err = _stop(proc)
    assert code == 0
    assert out == ""  # the announce line was already read; nothing per request
    assert err == ""
