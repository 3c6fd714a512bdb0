"""Failover across provider kinds, with the official SDKs against a real gateway process.

One gateway, three mock processes (healthy, resetting mid-stream, stalled before its first token)
and a port nobody listens on. Each model group has a primary of one provider kind and a fallback of
the other, so a failover also switches wire format (OpenAI chat completions <-> Anthropic Messages)
and the client must not be able to tell.

The breakers here never open (huge thresholds): every request really tries the dead primary first,
which the ledger shows (``deployments`` lists every deployment tried, in order).
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest

from tests.e2e.harness import Gateway, Proc, free_port, mock_stats, start_gateway, start_mock

pytestmark = pytest.mark.e2e

MSG: list[Any] = [{"role": "user", "content": "Hello"}]
TTFT_TIMEOUT_S = 0.5


@pytest.fixture(scope="module")
def tmp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("failover")


@pytest.fixture(scope="module")
def mocks(tmp: Path) -> Iterator[dict[str, Proc]]:
    fast = ("--base-latency-s", "0.005", "--tokens-per-s", "2000")
    procs = {
        "healthy": start_mock(tmp, *fast),
        "resetting": start_mock(tmp, *fast, "--reset-rate", "1", "--fault-after-chunks", "2"),
        "stalled": start_mock(tmp, *fast, "--first-token-delay-s", "30"),
    }
    yield procs
    for proc in procs.values():
        proc.stop()


@pytest.fixture(scope="module")
def gw(tmp: Path, mocks: dict[str, Proc]) -> Iterator[Gateway]:
    dead = f"http://127.0.0.1:{free_port()}/v1"
    healthy, resetting, stalled = (mocks[n].url + "/v1" for n in ("healthy", "resetting", "stalled"))

    def group(name: str, *deployments: dict[str, Any]) -> dict[str, Any]:
        return {"name": name, "deployments": [{**d, "priority": i} for i, d in enumerate(deployments)]}

    config = {
        "models": [
            group("gpt-x", {"name": "gpt-dead", "provider": "openai", "base_url": dead},
                  {"name": "gpt-via-anthropic", "provider": "anthropic", "base_url": healthy}),
            group("claude-x", {"name": "claude-dead", "provider": "anthropic", "base_url": dead},
                  {"name": "claude-via-openai", "provider": "openai", "base_url": healthy}),
            group("gpt-reset", {"name": "gpt-resetting", "provider": "anthropic", "base_url": resetting},
                  {"name": "gpt-reset-fallback", "provider": "openai", "base_url": healthy}),
            group("claude-reset", {"name": "claude-resetting", "provider": "openai", "base_url": resetting},
                  {"name": "claude-reset-fallback", "provider": "anthropic", "base_url": healthy}),
            group("gpt-stall", {"name": "stalled", "provider": "openai", "base_url": stalled,
                                "ttft_timeout_s": TTFT_TIMEOUT_S},
                  {"name": "stall-fallback", "provider": "anthropic", "base_url": healthy}),
        ],
        "resilience": {"breaker": {"consecutive_failures": 10_000, "min_requests": 10_000}},
        "store": {"sqlite_path": str(tmp / "seawall.db"), "refresh_interval_s": 0.5,
                  "ledger_flush_interval_s": 0.1},
    }
    gateway = start_gateway(tmp, config, tiers=("enterprise",))
    yield gateway
    gateway.stop()


def oai(gw: Gateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.url + "/v1", api_key=gw.keys["enterprise"], max_retries=0, timeout=10)


def claude(gw: Gateway) -> anthropic.Anthropic:
    # Workaround: with a client-wide ``timeout`` this anthropic SDK sends ``x-stainless-timeout:
    # NOT_GIVEN`` and the gateway answers 400 (see test_anthropic_sdk_with_a_client_timeout); a
    # numeric header of our own takes its place.
    return anthropic.Anthropic(base_url=gw.url, api_key=gw.keys["enterprise"], max_retries=0, timeout=10,
                               default_headers={"x-stainless-timeout": "10"})


def paths(mock: Proc) -> dict[str, int]:
    by_path: dict[str, int] = mock_stats(mock.url)["by_path"]
    return by_path


def ledger_row(gw: Gateway, request_id: str, timeout_s: float = 5.0) -> dict[str, Any]:
    """The usage ledger's row for ``request_id`` (it is written off the request path: wait for it)."""
    db = Path(gw.workdir) / "seawall.db"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with sqlite3.connect(db, timeout=5) as conn:
            conn.row_factory = sqlite3.Row
            row = conn.execute("SELECT * FROM usage WHERE request_id = ?", (request_id,)).fetchone()
        if row is not None:
            return dict(row)
        time.sleep(0.05)
    raise AssertionError(f"no ledger row for {request_id} within {timeout_s}s")


# -- openai SDK, failing over to an Anthropic deployment ------------------------------------------


def test_openai_sdk_completion_fails_over_to_anthropic(gw: Gateway, mocks: dict[str, Proc]) -> None:
    before = paths(mocks["healthy"])
    raw = oai(gw).chat.completions.with_raw_response.create(
        model="gpt-x", messages=MSG, max_tokens=5, extra_headers={"x-request-id": "fo-oai-plain"})
    completion = raw.parse()
    assert completion.object == "chat.completion"
    assert completion.choices[0].message.content == "tok0 tok1 tok2 tok3 tok4"
    assert completion.choices[0].finish_reason == "length"
    assert completion.usage is not None and completion.usage.completion_tokens == 5
    assert completion.usage.prompt_tokens > 0
    after = paths(mocks["healthy"])
    assert after.get("/v1/messages", 0) == before.get("/v1/messages", 0) + 1, "served as Anthropic Messages"
    row = ledger_row(gw, "fo-oai-plain")
    assert row["deployments"] == "gpt-dead,gpt-via-anthropic" and row["status"] == 200
    assert row["tokens_out"] == 5


def test_openai_sdk_stream_with_usage_fails_over_to_anthropic(gw: Gateway, mocks: dict[str, Proc]) -> None:
    before = paths(mocks["healthy"]).get("/v1/messages", 0)
    stream = oai(gw).chat.completions.create(
        model="gpt-x", messages=MSG, max_tokens=4, stream=True, stream_options={"include_usage": True},
        extra_headers={"x-request-id": "fo-oai-stream"})
    chunks = list(stream)
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "tok0 tok1 tok2 tok3"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"
    usage = chunks[-1].usage
    assert chunks[-1].choices == [] and usage is not None
    assert usage.completion_tokens == 4 and usage.prompt_tokens > 0
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    assert paths(mocks["healthy"]).get("/v1/messages", 0) == before + 1
    row = ledger_row(gw, "fo-oai-stream")
    assert row["deployments"] == "gpt-dead,gpt-via-anthropic" and row["status"] == 200
    assert (row["tokens_out"], row["reason"]) == (4, "ok")


async def test_async_openai_sdk_streams_without_usage_chunk(gw: Gateway) -> None:
    async with openai.AsyncOpenAI(base_url=gw.url + "/v1", api_key=gw.keys["enterprise"], max_retries=0,
                                  timeout=10) as client:
        stream = await client.chat.completions.create(model="gpt-x", messages=MSG, max_tokens=2, stream=True)
        chunks = [c async for c in stream]
    assert chunks and all(c.choices for c in chunks) and all(c.usage is None for c in chunks)
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "tok0 tok1"


# -- anthropic SDK, failing over to an OpenAI-compatible deployment -------------------------------


def test_anthropic_sdk_with_a_client_timeout(gw: Gateway) -> None:
    client = anthropic.Anthropic(base_url=gw.url, api_key=gw.keys["enterprise"], timeout=10)
    message = client.messages.create(model="claude-x", max_tokens=2, messages=MSG)
    assert message.content[0].text == "tok0 tok1"  # type: ignore[union-attr]


def test_anthropic_sdk_create_fails_over_to_openai(gw: Gateway, mocks: dict[str, Proc]) -> None:
    before = paths(mocks["healthy"]).get("/v1/chat/completions", 0)
    message = claude(gw).messages.create(model="claude-x", max_tokens=3, messages=MSG,
                                         extra_headers={"x-request-id": "fo-claude-plain"})
    assert message.type == "message" and message.role == "assistant"
    assert [b.type for b in message.content] == ["text"]
    assert message.content[0].text == "tok0 tok1 tok2"  # type: ignore[union-attr]
    assert message.stop_reason == "max_tokens"
    assert message.usage.output_tokens == 3 and message.usage.input_tokens > 0
    assert paths(mocks["healthy"]).get("/v1/chat/completions", 0) == before + 1
    row = ledger_row(gw, "fo-claude-plain")
    assert row["deployments"] == "claude-dead,claude-via-openai" and row["status"] == 200


def test_anthropic_sdk_stream_fails_over_to_openai(gw: Gateway, mocks: dict[str, Proc]) -> None:
    before = paths(mocks["healthy"]).get("/v1/chat/completions", 0)
    with claude(gw).messages.stream(model="claude-x", max_tokens=4, messages=MSG,
                                    extra_headers={"x-request-id": "fo-claude-stream"}) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "tok0 tok1 tok2 tok3"
    assert final.stop_reason == "max_tokens"
    assert final.usage.output_tokens == 4 and final.usage.input_tokens > 0
    assert paths(mocks["healthy"]).get("/v1/chat/completions", 0) == before + 1
    row = ledger_row(gw, "fo-claude-stream")
    assert row["deployments"] == "claude-dead,claude-via-openai"
    assert (row["status"], row["reason"], row["tokens_out"]) == (200, "ok", 4)


# -- a stream that breaks after its first byte: an error the SDK raises, and a ledger reason -------


def test_openai_sdk_raises_when_a_started_stream_breaks(gw: Gateway, mocks: dict[str, Proc]) -> None:
    before = paths(mocks["resetting"]).get("/v1/messages", 0)
    stream = oai(gw).chat.completions.create(model="gpt-reset", messages=MSG, max_tokens=8, stream=True,
                                             extra_headers={"x-request-id": "fo-oai-broken"})
    got: list[str] = []
    with pytest.raises(openai.APIError) as exc:
        for chunk in stream:
            got.extend(c.delta.content or "" for c in chunk.choices)
    assert "".join(got) == "tok0 tok1", "the first chunks arrived, then the failure"
    assert "resetting" in str(exc.value) and "stream" in str(exc.value)
    # Not retried on the healthy fallback: a started stream cannot be spliced.
    assert paths(mocks["resetting"]).get("/v1/messages", 0) == before + 1
    row = ledger_row(gw, "fo-oai-broken")
    assert row["deployments"] == "gpt-resetting"
    assert (row["status"], row["reason"]) == (502, "upstream_io")


def test_anthropic_sdk_raises_when_a_started_stream_breaks(gw: Gateway) -> None:
    got: list[str] = []
    with pytest.raises(anthropic.APIStatusError) as exc:
        with claude(gw).messages.stream(model="claude-reset", max_tokens=8, messages=MSG,
                                        extra_headers={"x-request-id": "fo-claude-broken"}) as stream:
            for text in stream.text_stream:
                got.append(text)
    assert "".join(got) == "tok0 tok1"
    assert isinstance(exc.value.body, dict) and exc.value.body["type"] == "error"
    assert exc.value.body["error"]["type"] == "api_error"
    assert "claude-resetting" in exc.value.body["error"]["message"]
    row = ledger_row(gw, "fo-claude-broken")
    assert row["deployments"] == "claude-resetting"
    assert (row["status"], row["reason"]) == (502, "upstream_io")


def test_raw_stream_never_ends_cleanly_after_a_break(gw: Gateway) -> None:
    """Byte level: the last event is an error object and there is no ``[DONE]`` after it."""
    with httpx.stream("POST", gw.url + "/v1/chat/completions", timeout=10,
                      headers={"authorization": f"Bearer {gw.keys['enterprise']}"},
                      json={"model": "gpt-reset", "messages": MSG, "max_tokens": 8, "stream": True}) as r:
        assert r.status_code == 200
        body = r.read()
    events = [e for e in body.split(b"\n\n") if e]
    assert events[-1].startswith(b'data: {"error":'), events[-1]
    assert b"data: [DONE]" not in events


# -- ttft_timeout_s: a deployment that sends no first token is left within the deadline ----------


def test_ttft_timeout_fails_over_within_the_deadline(gw: Gateway, mocks: dict[str, Proc]) -> None:
    stalled_before = mock_stats(mocks["stalled"].url)
    start = time.monotonic()
    stream = oai(gw).chat.completions.create(model="gpt-stall", messages=MSG, max_tokens=3, stream=True,
                                             extra_headers={"x-request-id": "fo-ttft"})
    first_s: float | None = None
    text = ""
    for chunk in stream:
        if first_s is None and chunk.choices and chunk.choices[0].delta.content:
            first_s = time.monotonic() - start
        text += "".join(c.delta.content or "" for c in chunk.choices)
    assert text == "tok0 tok1 tok2"
    assert first_s is not None
    # The primary's first token would take 30 s; the fallback answers right after the 0.5 s deadline.
    assert TTFT_TIMEOUT_S <= first_s < TTFT_TIMEOUT_S + 1.5, first_s
    row = ledger_row(gw, "fo-ttft")
    assert row["deployments"] == "stalled,stall-fallback" and row["status"] == 200
    assert TTFT_TIMEOUT_S <= row["ttft_s"] < TTFT_TIMEOUT_S + 1.5
    # The abandoned attempt was cancelled upstream (its connection closed), not left generating.
    deadline = time.monotonic() + 3
    while mock_stats(mocks["stalled"].url)["cancelled"] <= stalled_before["cancelled"]:
        assert time.monotonic() < deadline, "the stalled upstream request was never cancelled"
        time.sleep(0.05)
    assert mock_stats(mocks["stalled"].url)["in_flight"] == 0
