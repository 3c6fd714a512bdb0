"""Upstream answers -> the gateway's errors, checked against the one response classifier."""

from __future__ import annotations

import msgspec
import pytest

from seawall.algorithms.outcome import Outcome, classify
from seawall.core.errors import GatewayError, InvalidRequest, Overloaded, UpstreamError, UpstreamTimeout
from seawall.core.types import Operation, Request, Usage
from seawall.edges.upstreams import (
    AnthropicUpstream,
    OpenAIUpstream,
    UpstreamRejected,
    UpstreamSettings,
    make_upstream,
    status_error,
)
from seawall.edges.upstreams.anthropic import _event_usage
from seawall.providers import anthropic
from seawall.providers.translate import Untranslatable
from seawall.testing import FakeClock, make_request

OPENAI_400 = b'{"error":{"message":"bad temperature","type":"invalid_request_error","param":"temperature"}}'
ANTHROPIC_400 = b'{"type":"error","error":{"type":"invalid_request_error","message":"messages.0: bad"}}'
# Nothing listens on port 9 (discard) on loopback in the test environment; no test below connects.
NOWHERE = "http://127.0.0.1:9/v1"


def outcome(err: GatewayError) -> Outcome:
    return classify(err.upstream_status, err.error_kind)


@pytest.mark.parametrize(
    ("status", "kind", "gateway_status", "expected"),
    [
        (429, Overloaded, 503, Outcome.OVERLOADED),
        (529, Overloaded, 503, Outcome.OVERLOADED),
        (500, UpstreamError, 502, Outcome.FAILURE),
        (503, UpstreamError, 502, Outcome.FAILURE),
        (401, UpstreamError, 502, Outcome.FAILURE),
        (403, UpstreamError, 502, Outcome.FAILURE),
        (408, UpstreamTimeout, 504, Outcome.FAILURE),
        (400, UpstreamRejected, 400, Outcome.CLIENT_ERROR),
        (404, UpstreamRejected, 404, Outcome.CLIENT_ERROR),
        (413, UpstreamRejected, 413, Outcome.CLIENT_ERROR),
        (422, UpstreamRejected, 422, Outcome.CLIENT_ERROR),
    ],
)
def test_status_mapping_agrees_with_the_classifier(
    status: int, kind: type[GatewayError], gateway_status: int, expected: Outcome
) -> None:
    err = status_error("dep", status, {}, b"")
    assert type(err) is kind
    assert err.status == gateway_status
    assert err.upstream_status == status
    assert err.error_kind is None
    assert outcome(err) is expected


def test_429_carries_the_retry_hint_and_zero_headroom() -> None:
    headers = {"retry-after": "2", "x-ratelimit-limit-requests": "10", "x-ratelimit-remaining-requests": "3"}
    err = status_error("dep", 429, headers, b"")
    assert isinstance(err, Overloaded)
    assert err.retry_after_s == 2.0
    assert err.headroom == 0.0
    assert err.reason == "upstream_429"
    assert "dep" in err.message


def test_529_carries_retry_hint_and_whatever_headroom_the_headers_say() -> None:
    err = status_error("dep", 529, {"retry-after-ms": "1500"}, b"")
    assert (err.retry_after_s, err.code, err.reason) == (1.5, "upstream_overloaded", "upstream_529")
    assert not hasattr(err, "headroom")
    headers = {"anthropic-ratelimit-requests-limit": "4", "anthropic-ratelimit-requests-remaining": "1"}
    assert status_error("dep", 500, headers, b"").headroom == 0.25


@pytest.mark.parametrize(
    ("body", "message"), [(OPENAI_400, "bad temperature"), (ANTHROPIC_400, "messages.0: bad")]
)
def test_client_errors_pass_status_and_message_through(body: bytes, message: str) -> None:
    err = status_error("dep", 400, {}, body)
    assert isinstance(err, InvalidRequest)
    assert (err.status, err.message, err.upstream_status, err.reason) == (400, message, 400, "client_error")


def test_openai_param_passes_through_and_garbage_bodies_get_a_generic_message() -> None:
    assert status_error("dep", 400, {}, OPENAI_400).param == "temperature"
    assert status_error("dep", 400, {}, b"<html>").message == "The upstream rejected the request."
    assert status_error("dep", 400, {}, b"[1]").message == "The upstream rejected the request."


def test_the_upstreams_error_code_reaches_the_client() -> None:
    """Clients branch on it (``context_length_exceeded``); a code that does not look like one is not kept."""
    body = (b'{"error":{"message":"This model\'s maximum context length is 8192 tokens.","type":'
            b'"invalid_request_error","param":"messages","code":"context_length_exceeded"}}')
    err = status_error("dep", 400, {}, body)
    assert (err.code, err.param, err.status, err.type) == ("context_length_exceeded", "messages", 400,
                                                           "invalid_request_error")
    odd = b'{"error":{"message":"x","code":"<script>"}}'
    assert status_error("dep", 400, {}, odd).code == "upstream_rejected"
    assert status_error("dep", 422, {}, b'{"error":{"message":"x","code":42}}').code == "upstream_rejected"


@pytest.mark.parametrize(
    ("event", "kind", "upstream_status", "expected"),
    [
        (b'{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}', Overloaded, 529,
         Outcome.OVERLOADED),
        (b'{"type":"error","error":{"type":"rate_limit_error","message":"slow down"}}', Overloaded, 429,
         Outcome.OVERLOADED),
        (b'{"type":"error","error":{"type":"api_error","message":"boom"}}', UpstreamError, None,
         Outcome.FAILURE),
        (b"not json", UpstreamError, None, Outcome.FAILURE),
    ],
)
def test_anthropic_error_events_mid_stream(
    event: bytes, kind: type[GatewayError], upstream_status: int | None, expected: Outcome
) -> None:
    up = AnthropicUpstream(UpstreamSettings("dep", NOWHERE), clock=FakeClock())
    err = up._stream_failed(b"event: error\ndata: " + event + b"\n\n")
    assert type(err) is kind
    assert err.upstream_status == upstream_status
    assert outcome(err) is expected


def test_anthropic_stream_usage_counts_cache_tokens_and_takes_the_latest_output() -> None:
    start = anthropic.message_start(id="m", model="c", input_tokens=10)
    usage = _event_usage(None, start)
    assert usage == Usage(10, 1)
    usage = _event_usage(usage, anthropic.message_delta(stop_reason="end_turn", output_tokens=7))
    assert usage == Usage(10, 7)
    delta = b'event: message_delta\ndata: {"type":"message_delta","usage":{"input_tokens":4,' \
            b'"cache_read_input_tokens":20,"cache_creation_input_tokens":1,"output_tokens":9}}\n\n'
    assert _event_usage(usage, delta) == Usage(25, 9)
    assert _event_usage(usage, b"event: message_delta\ndata: {oops\n\n") == usage


def test_make_upstream_picks_the_adapter_by_provider() -> None:
    settings = UpstreamSettings("dep", NOWHERE)
    clock = FakeClock()
    assert type(make_upstream("openai", settings, clock=clock)) is OpenAIUpstream
    assert type(make_upstream("mock", settings, clock=clock)) is OpenAIUpstream
    assert type(make_upstream("anthropic", settings, clock=clock)) is AnthropicUpstream
    with pytest.raises(ValueError, match="unknown upstream provider 'gemini'"):
        make_upstream("gemini", settings, clock=clock)


# -- refused before anything is sent ----------------------------------------------------------------


def _anthropic_request(body: dict[str, object], clock: FakeClock) -> Request:
    now = clock.now()
    return Request(id="req_u", api="anthropic", operation=Operation.MESSAGES, raw=msgspec.json.encode(body),
                   headers={}, client_addr="127.0.0.1", received_at=now, deadline=now + 30,
                   parse=anthropic.parse_messages)


async def test_untranslatable_openai_request_is_a_400_naming_the_feature() -> None:
    clock = FakeClock()
    up = AnthropicUpstream(UpstreamSettings("claude", NOWHERE), clock=clock)
    body = b'{"model":"m","messages":[{"role":"user","content":"hi"}],"n":2}'
    with pytest.raises(Untranslatable) as exc:
        await up.send(make_request(body, now_s=clock.now()))
    err = exc.value
    assert (err.status, err.param, err.code) == (400, "n", "untranslatable")
    assert "claude" in err.message and "'n'" in err.message
    assert (err.upstream_status, err.error_kind) == (None, None)  # nothing was sent


async def test_untranslatable_anthropic_request_to_openai_is_a_400_too() -> None:
    clock = FakeClock()
    up = OpenAIUpstream(UpstreamSettings("gpt", NOWHERE), clock=clock)
    body = {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": [
        {"type": "document", "source": {"type": "text", "data": "x"}}]}]}
    with pytest.raises(Untranslatable) as exc:
        await up.send(_anthropic_request(body, clock))
    assert exc.value.param == "messages.0.content.0.type"
    assert "gpt" in exc.value.message


async def test_embeddings_are_refused_by_anthropic() -> None:
    clock = FakeClock()
    up = AnthropicUpstream(UpstreamSettings("claude", NOWHERE), clock=clock)
    request = make_request(b'{"model":"e","input":"x"}', operation=Operation.EMBEDDINGS, now_s=clock.now())
    with pytest.raises(InvalidRequest) as exc:
        await up.send(request)
    assert (exc.value.status, exc.value.code) == (400, "unsupported_operation")
    assert "embeddings" in exc.value.message


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
async def test_a_passed_deadline_is_a_timeout_without_a_call(provider: str) -> None:
    clock = FakeClock()
    up = make_upstream(provider, UpstreamSettings("dep", NOWHERE), clock=clock)
    request = make_request(now_s=clock.now(), timeout_s=1.0)
    clock.advance(2.0)
    with pytest.raises(UpstreamTimeout) as exc:
        await up.send(request)
    assert (exc.value.error_kind, exc.value.reason) == ("timeout", "deadline")
    await up.close()
