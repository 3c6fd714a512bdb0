"""The upstream adapters against the mock upstream in-process on loopback, all four combinations.

client API -> provider: openai -> openai (forwarded), openai -> anthropic (translated),
anthropic -> anthropic (forwarded), anthropic -> openai (translated). Answers are validated with
the official SDKs' own types, so a shape the SDKs would reject fails here.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import msgspec
import pytest
from aiohttp import web
from anthropic.types import Message, RawMessageStreamEvent
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from pydantic import TypeAdapter

from seawall.algorithms.outcome import Outcome, classify
from seawall.core.errors import GatewayError, InvalidRequest, Overloaded, UpstreamError, UpstreamTimeout
from seawall.core.types import Operation, Request, Response
from seawall.edges.upstreams import Upstream, UpstreamSettings, make_upstream
from seawall.env import SystemClock
from seawall.mock import MockConfig, MockUpstream, start_mock, upstream_of
from seawall.providers import anthropic, sse
from seawall.testing import make_request

TEST_BUDGET_S = 10.0
FAST = MockConfig(base_latency_s=0.001, tokens_per_s=0.0)
EVENTS: TypeAdapter[Any] = TypeAdapter(RawMessageStreamEvent)
COMBOS = [("openai", "openai"), ("openai", "anthropic"), ("anthropic", "anthropic"), ("anthropic", "openai")]
ids = [f"{client}-client->{provider}" for client, provider in COMBOS]


@pytest.fixture
async def mock() -> AsyncIterator[tuple[str, MockUpstream]]:
    runner, port = await start_mock(FAST)
    try:
        async with asyncio.timeout(TEST_BUDGET_S):
            yield f"http://127.0.0.1:{port}/v1", upstream_of(runner)
    finally:
        await runner.cleanup()


def request(api: str, *, stream: bool = False, max_tokens: int = 3, include_usage: bool = False,
            timeout_s: float = 5.0, **extra: Any) -> Request:
    body: dict[str, Any] = {"model": "mock-chat", "messages": [{"role": "user", "content": "hello"}],
                            "max_tokens": max_tokens, **extra}
    if stream:
        body["stream"] = True
        if include_usage:
            body["stream_options"] = {"include_usage": True}
    raw = msgspec.json.encode(body)
    now = time.monotonic()
    if api == "openai":
        return make_request(raw, now_s=now, timeout_s=timeout_s)
    return Request(id="req_a", api="anthropic", operation=Operation.MESSAGES, raw=raw, headers={},
                   client_addr="127.0.0.1", received_at=now, deadline=now + timeout_s,
                   parse=anthropic.parse_messages)


def upstream(provider: str, base_url: str, **settings: Any) -> Upstream:
    return make_upstream(provider, UpstreamSettings(name=f"{provider}-dep", base_url=base_url, **settings),
                         clock=SystemClock())


async def read_all(response: Response) -> list[bytes]:
    assert response.stream is not None
    raw = b"".join([chunk async for chunk in response.stream])
    splitter = sse.EventSplitter()
    events = splitter.feed(raw)
    assert splitter.pending == b""
    return events


def words(n: int) -> str:
    return " ".join(f"tok{i}" for i in range(n))


def outcome(err: GatewayError) -> Outcome:
    return classify(err.upstream_status, err.error_kind)


async def stats_when(mock: MockUpstream, key: str, value: int) -> dict[str, Any]:
    """Poll until ``stats.<key> == value`` with nothing else in flight (the mock notices a closed
    connection on its next loop turns); ``in_flight`` itself may be the key."""
    for _ in range(400):
        if getattr(mock.stats, key) == value and (key == "in_flight" or mock.stats.in_flight == 0):
            break
        await asyncio.sleep(0.005)
    return mock.stats.to_dict()


# -- success paths -------------------------------------------------------------------------------


@pytest.mark.parametrize(("client", "provider"), COMBOS, ids=ids)
async def test_complete_answer_in_the_clients_format(
    mock: tuple[str, MockUpstream], client: str, provider: str
) -> None:
    url, server = mock
    server.configure(FAST.with_changes({"max_in_flight": 4}))
    up = upstream(provider, url)
    try:
        response = await up.send(request(client, max_tokens=3))
    finally:
        await up.close()
    assert response.status == 200 and response.stream is None
    assert response.deployment == f"{provider}-dep"
    if client == "openai":
        completion = ChatCompletion.model_validate_json(response.body)
        assert completion.choices[0].message.content == words(3)
        assert completion.choices[0].finish_reason == "length"
        assert completion.usage is not None and completion.usage.completion_tokens == 3
    else:
        message = Message.model_validate_json(response.body)
        assert [b.type for b in message.content] == ["text"]
        assert message.content[0].text == words(3)  # type: ignore[union-attr]
        assert message.stop_reason == "max_tokens"
        assert message.usage.output_tokens == 3
    assert response.usage is not None
    assert response.usage.completion_tokens == 3 and response.usage.prompt_tokens > 0
    assert response.headroom == pytest.approx(0.75)  # 3 of 4 slots free while this one ran
    path = "/v1/messages" if provider == "anthropic" else "/v1/chat/completions"
    assert server.stats.by_path == {path: 1}


@pytest.mark.parametrize(("client", "provider"), COMBOS, ids=ids)
async def test_stream_in_the_clients_format_with_usage_captured(
    mock: tuple[str, MockUpstream], client: str, provider: str
) -> None:
    url, _ = mock
    up = upstream(provider, url)
    try:
        response = await up.send(request(client, stream=True, max_tokens=4))
        assert response.usage is None or response.usage.completion_tokens < 4  # not read to the end yet
        events = await read_all(response)
    finally:
        await up.close()
    assert ("text/event-stream") in dict(response.headers)["content-type"]
    if client == "openai":
        assert events[-1] == sse.DONE
        chunks = [ChatCompletionChunk.model_validate_json(sse.data_of(e)) for e in events[:-1]]
        assert chunks[0].choices[0].delta.role == "assistant"
        assert "".join(c.choices[0].delta.content or "" for c in chunks) == words(4)
        assert chunks[-1].choices[0].finish_reason == "length"
        assert all(c.usage is None for c in chunks)  # the client did not ask for usage
        assert all(b'"usage"' not in e for e in events)
    else:
        assert events[2] == anthropic.PING  # the SDKs' event unions leave the ping out
        del events[2]
        parsed = [EVENTS.validate_json(sse.data_of(e)) for e in events]
        kinds = [e.type for e in parsed]
        assert kinds[:2] == ["message_start", "content_block_start"]
        assert kinds[2:-3] == ["content_block_delta"] * 4
        assert kinds[-3:] == ["content_block_stop", "message_delta", "message_stop"]
        assert "".join(e.delta.text for e in parsed[2:-3]) == words(4)
        assert parsed[-2].delta.stop_reason == "max_tokens"
        assert parsed[-2].usage.output_tokens == 4
        assert all(e.startswith(b"event: " + k.encode() + b"\n") for e, k in zip(events, kinds, strict=True))
    assert response.usage is not None
    assert response.usage.completion_tokens == 4 and response.usage.prompt_tokens > 0


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
async def test_openai_stream_with_include_usage_ends_with_the_usage_chunk(
    mock: tuple[str, MockUpstream], provider: str
) -> None:
    url, _ = mock
    up = upstream(provider, url)
    try:
        response = await up.send(request("openai", stream=True, max_tokens=2, include_usage=True))
        events = await read_all(response)
    finally:
        await up.close()
    chunks = [ChatCompletionChunk.model_validate_json(sse.data_of(e)) for e in events[:-1]]
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 2
    assert response.usage is not None and response.usage.prompt_tokens == chunks[-1].usage.prompt_tokens


@pytest.mark.parametrize(("client", "provider"), COMBOS, ids=ids)
async def test_model_is_renamed_for_the_upstream(
    mock: tuple[str, MockUpstream], client: str, provider: str
) -> None:
    url, _ = mock
    up = upstream(provider, url, model="upstream-name")
    try:
        response = await up.send(request(client))
    finally:
        await up.close()
    assert msgspec.json.decode(response.body)["model"] == "upstream-name"


async def test_anthropic_headers_and_headroom_from_anthropic_rate_limit_headers(
    mock: tuple[str, MockUpstream],
) -> None:
    url, server = mock
    server.configure(FAST.with_changes({"max_in_flight": 2}))
    seen: list[dict[str, str]] = []
    original = server._routes[("POST", "/v1/messages")]

    async def spy(req: web.BaseRequest) -> web.StreamResponse:
        seen.append(dict(req.headers))
        return await original(req)

    server._routes[("POST", "/v1/messages")] = spy
    up = upstream("anthropic", url, api_key="sk-ant-test")
    try:
        response = await up.send(request("anthropic", stream=True))
        await read_all(response)
    finally:
        await up.close()
    assert response.headroom == pytest.approx(0.5)
    assert seen[0]["x-api-key"] == "sk-ant-test"
    assert seen[0]["anthropic-version"] == "2023-06-01"
    assert "Authorization" not in seen[0]


# -- failures before the first byte: retriable, classified -----------------------------------------


@pytest.mark.parametrize(("client", "provider"), COMBOS, ids=ids)
@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
async def test_429_is_overloaded_with_status_retry_hint_and_zero_headroom(
    mock: tuple[str, MockUpstream], client: str, provider: str, stream: bool
) -> None:
    url, server = mock
    server.configure(FAST.with_changes({"max_in_flight": 0, "base_latency_s": 0.25}))
    up = upstream(provider, url)
    try:
        with pytest.raises(Overloaded) as exc:
            await up.send(request(client, stream=stream))
    finally:
        await up.close()
    err = exc.value
    assert (err.upstream_status, err.error_kind, err.retry_after_s) == (429, None, 0.25)
    assert err.headroom == 0.0
    assert outcome(err) is Outcome.OVERLOADED
    assert server.stats.rejected_429 == 1


@pytest.mark.parametrize(("client", "provider"), COMBOS, ids=ids)
async def test_529_is_overloaded_with_status_and_retry_hint(
    mock: tuple[str, MockUpstream], client: str, provider: str
) -> None:
    url, server = mock
    server.configure(FAST.with_changes({"base_latency_s": 0.5}))
    up = upstream(provider, url, headers=(("x-mock-fault", "529"),))
    try:
        with pytest.raises(Overloaded) as exc:
            await up.send(request(client, stream=True))
    finally:
        await up.close()
    err = exc.value
    assert (err.upstream_status, err.error_kind, err.retry_after_s) == (529, None, 0.5)
    assert outcome(err) is Outcome.OVERLOADED
    assert server.stats.overloaded_529 == 1


@pytest.mark.parametrize(("client", "provider"), COMBOS, ids=ids)
async def test_500_is_an_upstream_failure(mock: tuple[str, MockUpstream], client: str, provider: str) -> None:
    url, server = mock
    server.configure(FAST.with_changes({"error_rate": 1.0}))
    up = upstream(provider, url)
    try:
        with pytest.raises(UpstreamError) as exc:
            await up.send(request(client, stream=True))
    finally:
        await up.close()
    assert (exc.value.status, exc.value.upstream_status) == (502, 500)
    assert outcome(exc.value) is Outcome.FAILURE


@pytest.mark.parametrize(("client", "provider"), COMBOS, ids=ids)
async def test_reset_before_the_answer_is_a_read_failure(
    mock: tuple[str, MockUpstream], client: str, provider: str
) -> None:
    url, _ = mock
    up = upstream(provider, url, headers=(("x-mock-fault", "reset"),))
    try:
        with pytest.raises(UpstreamError) as exc:
            await up.send(request(client))
    finally:
        await up.close()
    assert (exc.value.upstream_status, exc.value.error_kind) == (None, "read")
    assert outcome(exc.value) is Outcome.FAILURE


async def test_nothing_listening_is_a_connect_failure(unused_tcp_port: int) -> None:
    up = upstream("anthropic", f"http://127.0.0.1:{unused_tcp_port}/v1")
    try:
        with pytest.raises(UpstreamError) as exc:
            await up.send(request("anthropic"))
    finally:
        await up.close()
    assert (exc.value.error_kind, exc.value.reason) == ("connect", "upstream_connect")


@pytest.mark.parametrize(("client", "provider"), [("openai", "openai"), ("anthropic", "anthropic")])
async def test_upstream_400_passes_through_as_a_client_error(
    mock: tuple[str, MockUpstream], client: str, provider: str
) -> None:
    url, _ = mock
    up = upstream(provider, url)
    try:
        with pytest.raises(InvalidRequest) as exc:
            await up.send(request(client, mock={"fault": "meteor"}))  # the mock refuses its own knob
    finally:
        await up.close()
    err = exc.value
    assert (err.status, err.upstream_status, err.error_kind) == (400, 400, None)
    assert "'mock.fault' must be one of" in err.message
    assert outcome(err) is Outcome.CLIENT_ERROR


# -- failures after the first byte: raised from the stream ------------------------------------------


@pytest.mark.parametrize(("client", "provider"), COMBOS, ids=ids)
async def test_reset_mid_stream_raises_from_the_iterator(
    mock: tuple[str, MockUpstream], client: str, provider: str
) -> None:
    url, server = mock
    server.configure(FAST.with_changes({"fault_after_chunks": 2}))
    up = upstream(provider, url, headers=(("x-mock-fault", "reset"),))
    received: list[bytes] = []
    try:
        response = await up.send(request(client, stream=True, max_tokens=8))
        assert response.stream is not None
        with pytest.raises(UpstreamError) as exc:
            async for chunk in response.stream:
                received.append(chunk)
    finally:
        await up.close()
    assert received, "the first event arrived before send() returned"
    assert b"tok1" in b"".join(received) and b"tok2" not in b"".join(received)
    assert (exc.value.error_kind, exc.value.upstream_status) == ("read", None)
    assert outcome(exc.value) is Outcome.FAILURE
    assert server.stats.resets == 1


async def test_stall_mid_stream_past_the_read_timeout_raises_a_timeout(
    mock: tuple[str, MockUpstream],
) -> None:
    url, server = mock
    server.configure(FAST.with_changes({"stall_s": 2.0, "fault_after_chunks": 1}))
    up = upstream("anthropic", url, read_s=0.2, headers=(("x-mock-fault", "stall"),))
    try:
        response = await up.send(request("openai", stream=True))
        assert response.stream is not None
        with pytest.raises(UpstreamTimeout) as exc:
            async for _ in response.stream:
                pass
    finally:
        await up.close()
    assert (exc.value.error_kind, exc.value.reason) == ("timeout", "upstream_stall")
    stats = await stats_when(server, "cancelled", 1)
    assert (stats["stalls"], stats["cancelled"]) == (1, 1)  # the connection was closed, not drained


# -- cancellation closes the upstream connection -----------------------------------------------------


@pytest.mark.parametrize(("client", "provider"), COMBOS, ids=ids)
async def test_cancelling_a_stream_closes_the_upstream(
    mock: tuple[str, MockUpstream], client: str, provider: str
) -> None:
    url, server = mock
    server.configure(FAST.with_changes({"tokens_per_s": 20.0}))  # 16 tokens take 0.75 s
    up = upstream(provider, url)
    first = asyncio.Event()

    async def consume() -> None:
        response = await up.send(request(client, stream=True, max_tokens=16))
        assert response.stream is not None
        async for _ in response.stream:
            first.set()

    task = asyncio.create_task(consume())
    try:
        await first.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        stats = await stats_when(server, "cancelled", 1)
    finally:
        await up.close()
    assert (stats["cancelled"], stats["served"], stats["in_flight"]) == (1, 0, 0)


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
async def test_closing_a_stream_early_closes_the_upstream(
    mock: tuple[str, MockUpstream], provider: str
) -> None:
    url, server = mock
    server.configure(FAST.with_changes({"tokens_per_s": 20.0}))
    up = upstream(provider, url)
    try:
        response = await up.send(request("anthropic", stream=True, max_tokens=16))
        assert response.stream is not None
        await response.stream.__anext__()
        await response.stream.aclose()
        stats = await stats_when(server, "cancelled", 1)
    finally:
        await up.close()
    assert (stats["cancelled"], stats["served"]) == (1, 0)


async def test_cancelling_while_waiting_for_the_answer_closes_the_upstream(
    mock: tuple[str, MockUpstream],
) -> None:
    url, server = mock
    up = upstream("anthropic", url, headers=(("x-mock-latency-s", "5"),))
    try:
        task = asyncio.create_task(up.send(request("openai")))
        await stats_when(server, "in_flight", 1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        stats = await stats_when(server, "cancelled", 1)
    finally:
        await up.close()
    assert (stats["cancelled"], stats["served"]) == (1, 0)


async def test_the_requests_own_deadline_is_not_a_failure_of_the_deployment(
    mock: tuple[str, MockUpstream],
) -> None:
    """A slow answer that outlives the client's budget (its deadline, shorter than the deployment's
    timeouts) ends as ``deadline``, neutral for the breaker; the deployment's own timeout is a
    failure."""
    url, server = mock
    server.configure(FAST.with_changes({"base_latency_s": 1.0}))
    up = upstream("openai", url, read_s=30.0, total_s=60.0)
    try:
        with pytest.raises(UpstreamTimeout) as by_deadline:
            await up.send(request("openai", timeout_s=0.3))
        slow = upstream("openai", url, read_s=0.3, total_s=60.0)
        try:
            with pytest.raises(UpstreamTimeout) as by_deployment:
                await slow.send(request("openai", timeout_s=30.0))
        finally:
            await slow.close()
    finally:
        await up.close()
    assert (by_deadline.value.reason, outcome(by_deadline.value)) == ("deadline", Outcome.CANCELLED)
    assert (by_deployment.value.reason, outcome(by_deployment.value)) == ("upstream_timeout", Outcome.FAILURE)
