"""The upstream adapters against a scripted server on loopback: answers the mock never gives
(error events mid-stream, malformed JSON, streams that just end, odd statuses)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import msgspec
import pytest
from aiohttp import web

from seawall.algorithms.outcome import Outcome, classify
from seawall.core.errors import GatewayError, Overloaded, UpstreamError
from seawall.core.types import Operation, Request, Response
from seawall.edges.upstreams import Upstream, UpstreamSettings, make_upstream
from seawall.env import SystemClock
from seawall.providers import anthropic
from seawall.testing import make_request

TEST_BUDGET_S = 10.0
START = anthropic.message_start(id="msg_1", model="c", input_tokens=5)
OPENAI_ROLE = b'data: {"id":"c","object":"chat.completion.chunk","created":0,"model":"m",' \
              b'"choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}\n\n'


class Script:
    """One canned answer: status, headers and body parts written one after another."""

    def __init__(self) -> None:
        self.status = 200
        self.headers: dict[str, str] = {"content-type": "text/event-stream"}
        self.parts: list[bytes] = []

    async def __call__(self, request: web.Request) -> web.StreamResponse:
        await request.read()
        response = web.StreamResponse(status=self.status, headers=self.headers)
        await response.prepare(request)
        for part in self.parts:
            await response.write(part)
            await asyncio.sleep(0.01)
        await response.write_eof()
        return response


@pytest.fixture
async def scripted() -> AsyncIterator[tuple[str, Script]]:
    script = Script()
    app = web.Application()

    async def handle(request: web.Request) -> web.StreamResponse:
        return await script(request)

    app.router.add_post("/v1/{tail:.*}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        async with asyncio.timeout(TEST_BUDGET_S):
            yield f"http://127.0.0.1:{runner.addresses[0][1]}/v1", script
    finally:
        await runner.cleanup()


def request(api: str, stream: bool = True) -> Request:
    body = msgspec.json.encode({"model": "m", "max_tokens": 5, "stream": stream,
                                "messages": [{"role": "user", "content": "hi"}]})
    now = time.monotonic()
    if api == "openai":
        return make_request(body, now_s=now)
    return Request(id="req_s", api="anthropic", operation=Operation.MESSAGES, raw=body, headers={},
                   client_addr="127.0.0.1", received_at=now, deadline=now + 5, parse=anthropic.parse_messages)


def upstream(provider: str, url: str) -> Upstream:
    return make_upstream(provider, UpstreamSettings("dep", url), clock=SystemClock())


async def drain(up: Upstream, req: Request) -> tuple[Response, list[bytes], BaseException]:
    received: list[bytes] = []
    response = await up.send(req)
    assert response.stream is not None
    with pytest.raises(GatewayError) as exc:
        async for chunk in response.stream:
            received.append(chunk)
    return response, received, exc.value


def outcome(err: GatewayError) -> Outcome:
    return classify(err.upstream_status, err.error_kind)


@pytest.mark.parametrize("client", ["anthropic", "openai"])
async def test_anthropic_overloaded_event_mid_stream_stays_an_overload(
    scripted: tuple[str, Script], client: str
) -> None:
    url, script = scripted
    error = b'event: error\ndata: {"type":"error","error":{"type":"overloaded_error","message":"Over"}}\n\n'
    script.parts = [START, anthropic.text_block_start(0), anthropic.text_delta(0, "Hel"), error]
    up = upstream("anthropic", url)
    try:
        response, received, err = await drain(up, request(client))
    finally:
        await up.close()
    assert isinstance(err, Overloaded)
    assert (err.upstream_status, err.error_kind) == (529, None)
    assert outcome(err) is Outcome.OVERLOADED  # not a breaker failure
    assert b"Hel" in b"".join(received)
    assert response.usage is not None and response.usage.prompt_tokens == 5


@pytest.mark.parametrize("client", ["anthropic", "openai"])
async def test_anthropic_stream_that_just_ends_is_a_read_failure(
    scripted: tuple[str, Script], client: str
) -> None:
    url, script = scripted
    script.parts = [START, anthropic.text_block_start(0), anthropic.text_delta(0, "Hel")]
    up = upstream("anthropic", url)
    try:
        _, _, err = await drain(up, request(client))
    finally:
        await up.close()
    assert isinstance(err, UpstreamError)
    assert (err.error_kind, err.reason) == ("read", "upstream_truncated")


async def test_malformed_event_in_a_translated_stream_is_a_protocol_failure(
    scripted: tuple[str, Script],
) -> None:
    url, script = scripted
    script.parts = [START, b"event: content_block_start\ndata: {nope\n\n"]
    up = upstream("anthropic", url)
    try:
        _, _, err = await drain(up, request("openai"))
    finally:
        await up.close()
    assert isinstance(err, UpstreamError)
    assert err.error_kind == "protocol"
    assert outcome(err) is Outcome.FAILURE


@pytest.mark.parametrize("client", ["openai", "anthropic"])
async def test_openai_error_event_mid_stream_raises_from_the_iterator(
    scripted: tuple[str, Script], client: str
) -> None:
    url, script = scripted
    script.parts = [OPENAI_ROLE, b'data: {"error":{"message":"model crashed","type":"server_error"}}\n\n']
    up = upstream("openai", url)
    try:
        _, received, err = await drain(up, request(client))
    finally:
        await up.close()
    assert isinstance(err, UpstreamError)
    assert err.error_kind == "read" and "model crashed" in err.message
    assert len(received) == 1


@pytest.mark.parametrize(("provider", "client"), [("openai", "anthropic"), ("anthropic", "openai")])
async def test_malformed_complete_answer_is_a_protocol_failure(
    scripted: tuple[str, Script], provider: str, client: str
) -> None:
    url, script = scripted
    script.headers = {"content-type": "application/json"}
    script.parts = [b'{"unexpected": true}']
    up = upstream(provider, url)
    try:
        with pytest.raises(UpstreamError) as exc:
            await up.send(request(client, stream=False))
    finally:
        await up.close()
    assert exc.value.error_kind == "protocol"
    assert exc.value.upstream_status is None


async def test_a_stream_with_no_event_at_all_fails_before_returning(scripted: tuple[str, Script]) -> None:
    url, _ = scripted  # the script's default: a 200 event stream with no events
    up = upstream("anthropic", url)
    try:
        with pytest.raises(UpstreamError) as exc:
            await up.send(request("anthropic"))  # failures before the first byte stay retriable
    finally:
        await up.close()
    assert exc.value.error_kind == "read"


@pytest.mark.parametrize(("status", "expected"), [(401, Outcome.FAILURE), (404, Outcome.CLIENT_ERROR),
                                                  (529, Outcome.OVERLOADED), (503, Outcome.FAILURE)])
async def test_error_statuses_with_anthropic_bodies(
    scripted: tuple[str, Script], status: int, expected: Outcome
) -> None:
    url, script = scripted
    script.status = status
    script.headers = {"content-type": "application/json", "retry-after": "7",
                      "anthropic-ratelimit-tokens-limit": "100", "anthropic-ratelimit-tokens-remaining": "10"}
    script.parts = [b'{"type":"error","error":{"type":"not_found_error","message":"model: m"}}']
    up = upstream("anthropic", url)
    try:
        with pytest.raises(GatewayError) as exc:
            await up.send(request("openai"))
    finally:
        await up.close()
    err: Any = exc.value
    assert err.upstream_status == status
    assert outcome(err) is expected
    assert err.headroom == pytest.approx(0.1)
    if status == 404:
        assert (err.status, err.message) == (404, "model: m")
    if status == 529:
        assert err.retry_after_s == 7.0
