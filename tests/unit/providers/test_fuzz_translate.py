"""Property tests of OpenAI <-> Anthropic translation (``providers/translate.py``): any valid body
translates to a body the other side's validator accepts (or is refused as untranslatable), and a
round trip keeps what the module promises to keep: model, every turn's text, system text, token
bounds, stop sequences, temperature (clamped to Anthropic's 0..1), stream; responses keep their text,
usage and stop reason."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from seawall.core.errors import InvalidRequest, UpstreamError
from seawall.providers import anthropic, openai, sse, translate

TEXT = st.text(min_size=1, max_size=16)
OPENAI_PARTS = st.lists(st.fixed_dictionaries({"type": st.just("text"), "text": TEXT}), min_size=1, max_size=3)
OPENAI_MESSAGE = st.fixed_dictionaries({"role": st.sampled_from(["system", "developer", "user", "assistant"]),
                                        "content": TEXT | OPENAI_PARTS})
OPENAI_BODY = st.fixed_dictionaries(
    {"model": TEXT, "messages": st.lists(OPENAI_MESSAGE, min_size=1, max_size=6)},
    optional={"max_tokens": st.integers(1, 100_000), "temperature": st.floats(0, 2), "top_p": st.floats(0, 1),
              "stream": st.booleans(), "stop": TEXT | st.lists(TEXT, min_size=1, max_size=4), "user": TEXT})
ANTHROPIC_BLOCKS = st.lists(st.fixed_dictionaries({"type": st.just("text"), "text": TEXT}), min_size=1, max_size=3)
ANTHROPIC_MESSAGE = st.fixed_dictionaries({"role": st.sampled_from(["user", "assistant"]),
                                           "content": TEXT | ANTHROPIC_BLOCKS})
ANTHROPIC_BODY = st.fixed_dictionaries(
    {"model": TEXT, "max_tokens": st.integers(1, 100_000), "messages": st.lists(ANTHROPIC_MESSAGE, min_size=1,
                                                                                max_size=6)},
    optional={"system": TEXT | ANTHROPIC_BLOCKS, "temperature": st.floats(0, 1), "top_p": st.floats(0, 1),
              "stream": st.booleans(), "stop_sequences": st.lists(TEXT, min_size=1, max_size=4),
              "metadata": st.fixed_dictionaries({"user_id": TEXT})})


def texts(content: Any) -> str:
    if isinstance(content, str):
        return content
    return "".join(part["text"] for part in content)


def turns(messages: list[dict[str, Any]], system_roles: tuple[str, ...] = ("system", "developer")
          ) -> tuple[list[str], list[tuple[str, str]]]:
    """System texts, then (role, text) per turn, consecutive turns of one role merged."""
    system: list[str] = []
    out: list[tuple[str, str]] = []
    for message in messages:
        text = texts(message["content"])
        if message["role"] in system_roles:
            system.append(text)
        elif out and out[-1][0] == message["role"]:
            out[-1] = (message["role"], out[-1][1] + text)
        else:
            out.append((message["role"], text))
    return system, out


def encoded(body: dict[str, Any]) -> bytes:
    return json.dumps(body).encode()


@settings(max_examples=200)
@given(OPENAI_BODY)
def test_openai_to_anthropic_is_valid_and_round_trips(body: dict[str, Any]) -> None:
    openai.parse_chat(encoded(body))  # the generator makes valid bodies
    try:
        there = translate.openai_request_to_anthropic(body)
    except InvalidRequest:
        assert all(m["role"] in ("system", "developer") for m in body["messages"])  # nothing to answer
        return
    anthropic.parse_messages(encoded(there))  # what is sent is what Anthropic accepts
    back = translate.anthropic_request_to_openai(there)
    openai.parse_chat(encoded(back))
    assert back["model"] == body["model"]
    assert back["max_completion_tokens"] == body.get("max_tokens", translate.DEFAULT_MAX_TOKENS)
    assert back.get("stream", False) == body.get("stream", False)
    (system, sent), (system_back, got) = turns(body["messages"]), turns(back["messages"])
    assert "".join(system) == "".join(system_back)
    assert got == sent
    if "temperature" in body:
        assert back["temperature"] == min(body["temperature"], 1)
    if "stop" in body:
        assert back["stop"] == ([body["stop"]] if isinstance(body["stop"], str) else body["stop"])
    assert back.get("user") == body.get("user")


@settings(max_examples=200)
@given(ANTHROPIC_BODY)
def test_anthropic_to_openai_is_valid_and_round_trips(body: dict[str, Any]) -> None:
    anthropic.parse_messages(encoded(body))
    there = translate.anthropic_request_to_openai(body)
    openai.parse_chat(encoded(there))
    back = translate.openai_request_to_anthropic(there)
    anthropic.parse_messages(encoded(back))
    assert (back["model"], back["max_tokens"]) == (body["model"], body["max_tokens"])
    assert back.get("stream", False) == body.get("stream", False)
    assert turns(back["messages"])[1] == turns(body["messages"])[1]
    assert texts(back.get("system", "")) == texts(body.get("system", ""))
    for name in ("temperature", "top_p", "stop_sequences", "metadata"):
        assert back.get(name) == body.get(name), name


@settings(max_examples=200)
@given(st.lists(TEXT, max_size=4), st.integers(0, 10**6), st.integers(0, 10**6), st.integers(0, 10**6),
       st.sampled_from(["end_turn", "max_tokens", "refusal", None]))
def test_responses_round_trip_text_usage_and_stop_reason(parts: list[str], tokens_in: int, tokens_out: int,
                                                         cached: int, stop: str | None) -> None:
    message = anthropic.message_object(id="msg_1", model="m", content=[{"type": "text", "text": t} for t in parts],
                                       stop_reason=stop, input_tokens=tokens_in, output_tokens=tokens_out)
    if cached:
        message["usage"]["cache_read_input_tokens"] = cached
    completion = translate.anthropic_response_to_openai(message, model="m")
    assert completion["choices"][0]["message"]["content"] == "".join(parts)
    assert completion["usage"]["prompt_tokens"] == tokens_in + cached
    back = translate.openai_response_to_anthropic(completion, model="m")
    assert texts(back["content"]) == "".join(parts)
    assert back["stop_reason"] == (stop or "end_turn")
    assert (back["usage"]["input_tokens"], back["usage"]["output_tokens"]) == (tokens_in, tokens_out)
    assert back["usage"].get("cache_read_input_tokens", 0) == cached


def test_regression_only_system_messages_are_untranslatable() -> None:
    """Found by the fuzzer: a conversation of system messages became an Anthropic body with no
    messages, which Anthropic refuses; it is now untranslatable, so routing skips the deployment."""
    body = {"model": "m", "messages": [{"role": "system", "content": "be brief"}]}
    try:
        translate.openai_request_to_anthropic(body)
    except translate.Untranslatable as err:
        assert err.param == "messages"
    else:
        raise AssertionError("translated a conversation Anthropic cannot take")


def anthropic_wire(blocks: list[list[str]], stop: str, tokens_in: int, tokens_out: int) -> bytes:
    events: list[dict[str, Any]] = [{"type": "message_start", "message": {
        "id": "msg_1", "type": "message", "role": "assistant", "model": "c", "content": [], "stop_reason": None,
        "stop_sequence": None, "usage": {"input_tokens": tokens_in, "output_tokens": 1}}}]
    for i, deltas in enumerate(blocks):
        events.append({"type": "content_block_start", "index": i, "content_block": {"type": "text", "text": ""}})
        events += [{"type": "content_block_delta", "index": i, "delta": {"type": "text_delta", "text": d}}
                   for d in deltas]
        events.append({"type": "content_block_stop", "index": i})
    events.append({"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": None},
                   "usage": {"output_tokens": tokens_out}})
    events.append({"type": "message_stop"})
    return b"".join(b"event: %s\ndata: %s\n\n" % (e["type"].encode(), json.dumps(e).encode()) for e in events)


@settings(max_examples=150)
@given(st.lists(st.lists(TEXT, max_size=4), max_size=3), st.sampled_from(["end_turn", "max_tokens"]),
       st.integers(0, 10**6), st.integers(0, 10**6), st.lists(st.integers(1, 4000), max_size=10))
def test_streams_round_trip_text_usage_and_stop_reason_whatever_the_chunk_boundaries(
        blocks: list[list[str]], stop: str, tokens_in: int, tokens_out: int, cuts: list[int]) -> None:
    wire = anthropic_wire(blocks, stop, tokens_in, tokens_out)
    splitter, pieces, at = sse.EventSplitter(), [], 0
    for cut in sorted(cuts):
        pieces.append(wire[at:cut])
        at = max(at, cut)
    pieces.append(wire[at:])
    a2o = translate.AnthropicToOpenAIStream("gpt", "chatcmpl-1", 1, include_usage=True)
    o2a = translate.OpenAIToAnthropicStream("claude", "msg_2", input_tokens=tokens_in)
    chunks = [chunk for piece in pieces for event in splitter.feed(piece) for chunk in a2o.feed(event)]
    assert chunks[-1] == sse.DONE and a2o.done
    text, finish = "", None
    for framed in chunks[:-1]:
        for choice in json.loads(sse.data_of(framed))["choices"]:
            text += choice["delta"].get("content") or ""
            finish = choice["finish_reason"] or finish
    assert text == "".join("".join(block) for block in blocks)
    assert finish == translate.finish_reason_from_anthropic(stop)
    assert (a2o.usage.prompt_tokens, a2o.usage.completion_tokens) == (tokens_in, tokens_out)
    events = [json.loads(sse.data_of(e)) for chunk in chunks for e in o2a.feed(chunk)]
    assert "".join(e["delta"]["text"] for e in events if e["type"] == "content_block_delta") == text
    assert [e["delta"]["stop_reason"] for e in events if e["type"] == "message_delta"] == [stop]


EVENT_JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=8),
                          lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
                              st.sampled_from(["type", "index", "delta", "message", "usage", "content_block",
                                               "choices", "error", "text", "id", "name", "finish_reason"]) | st.text(
                                  max_size=4), inner, max_size=4), max_leaves=10)
EVENT_TYPES = st.sampled_from(["message_start", "content_block_start", "content_block_delta", "content_block_stop",
                               "message_delta", "message_stop", "error", "ping"])


@settings(max_examples=300)
@given(st.lists(st.builds(lambda kind, rest: {**rest, "type": kind} if isinstance(rest, dict) else rest,
                          EVENT_TYPES, EVENT_JSON), max_size=6))
def test_stream_converters_take_any_event_or_refuse_it_as_an_upstream_error(events: list[Any]) -> None:
    """Upstream events of any shape: converted, or a typed UpstreamError (the client's stream then
    ends with an error event), never an AttributeError from deep inside."""
    for conv in (translate.AnthropicToOpenAIStream("gpt", "c", 1, include_usage=True),
                 translate.OpenAIToAnthropicStream("claude", "m")):
        for event in events:
            try:
                conv.feed(sse.event(json.dumps(event).encode()))
            except UpstreamError:
                break


def test_regression_a_field_of_the_wrong_type_in_a_stream_event_is_an_upstream_error() -> None:
    """Found by the fuzzer: ``{"type": "message_start", "message": true}`` raised AttributeError."""
    for conv, event in ((translate.AnthropicToOpenAIStream("gpt", "c", 1), {"type": "message_start", "message": True}),
                        (translate.OpenAIToAnthropicStream("claude", "m"), {"choices": True})):
        try:
            conv.feed(sse.event(json.dumps(event).encode()))
        except UpstreamError as err:
            assert err.code == "bad_stream_event"
        else:
            raise AssertionError(f"{event} was taken")
