"""Property tests of the request body parsers (``openai.parse_chat``, ``parse_embeddings``,
``anthropic.parse_messages``): whatever the bytes, the answer is a payload or a 400 naming the
problem, never another exception (which the server would turn into a 500)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from seawall.core.errors import InvalidRequest
from seawall.core.types import Payload
from seawall.providers import anthropic, openai

PARSERS: list[Callable[[bytes], Payload]] = [openai.parse_chat, openai.parse_embeddings, anthropic.parse_messages]

SCALARS = (st.none() | st.booleans() | st.integers() | st.integers(-(2**80), 2**80)
           | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=12))
JSON = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                                          max_size=4), max_leaves=12)
KINDS = st.sampled_from(["text", "image", "image_url", "tool_use", "tool_result"])
PART = st.fixed_dictionaries({"type": KINDS | JSON},
                             optional={"text": st.text(max_size=8) | JSON, "source": JSON, "id": JSON, "input": JSON,
                                       "content": JSON, "image_url": JSON})
MESSAGE = st.fixed_dictionaries({}, optional={
    "role": st.sampled_from(["user", "assistant", "system", "developer", "tool", "function", "bot"]) | JSON,
    "content": st.text(max_size=12) | st.lists(PART, max_size=3) | JSON,
    "tool_calls": JSON, "tool_call_id": JSON, "name": JSON,
})
FIELDS = {name: JSON for name in (
    "stream", "stream_options", "max_tokens", "max_completion_tokens", "n", "temperature", "top_p", "top_k",
    "service_tier", "input", "encoding_format", "system", "tools", "tool_choice", "stop_sequences", "metadata",
    "stop", "user")}
BODY = st.fixed_dictionaries({}, optional={
    "model": st.text(min_size=1, max_size=8) | JSON,
    "messages": st.lists(MESSAGE, min_size=1, max_size=4) | JSON,
    "max_tokens": st.integers(-2, 2**64) | JSON,
    "stream": st.booleans() | JSON,
    **{k: v for k, v in FIELDS.items() if k not in ("max_tokens", "stream")},
})


def payload_or_400(parse: Callable[[bytes], Payload], raw: bytes) -> Payload | None:
    try:
        payload = parse(raw)
    except InvalidRequest as err:
        assert err.status == 400 and err.message
        json.loads(openai.error_body(err))  # the refusal renders
        return None
    assert isinstance(payload, Payload) and payload.model
    assert payload.max_tokens is None or 1 <= payload.max_tokens <= openai.BODY_LIMITS.max_output_tokens
    return payload


@settings(max_examples=300)
@given(st.binary(max_size=200))
def test_any_bytes_are_a_payload_or_a_400(raw: bytes) -> None:
    for parse in PARSERS:
        payload_or_400(parse, raw)


@settings(max_examples=150)
@given(BODY)
def test_bodies_of_every_shape_are_a_payload_or_a_400(body: dict[str, Any]) -> None:
    raw = json.dumps(body).encode()
    for parse in PARSERS:
        payload_or_400(parse, raw)


@settings(max_examples=100)
@given(BODY, st.integers(0, 199), st.binary(min_size=1, max_size=3))
def test_bodies_with_bytes_spliced_in_are_a_payload_or_a_400(body: dict[str, Any], at: int, junk: bytes) -> None:
    raw = json.dumps(body).encode()
    at %= len(raw)
    for parse in PARSERS:
        payload_or_400(parse, raw[:at] + junk + raw[at:])


@settings(max_examples=30)
@given(st.integers(1, 5_000), st.sampled_from([b"[", b'{"a":']))
def test_any_nesting_depth_is_a_payload_or_a_400(depth: int, opener: bytes) -> None:
    closer = b"]" if opener == b"[" else b"}"
    head = b'{"model":"m","messages":[{"role":"user","content":"hi"}],"x":'
    assert payload_or_400(openai.parse_chat, head + opener * depth + b"1" + closer * depth + b"}") is not None or (
        depth > 500)


def test_regression_deep_nesting_was_a_recursion_error() -> None:
    raw = b'{"model":"m","messages":[{"role":"user","content":"hi"}],"x":' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    for parse in PARSERS:
        assert payload_or_400(parse, raw) is None


def test_regression_a_role_or_service_tier_that_is_a_list_was_a_type_error() -> None:
    """Found by the fuzzer: ``role: []`` met ``not in frozenset`` (unhashable): a 500."""
    for body, parse in (({"model": "m", "messages": [{"role": []}]}, openai.parse_chat),
                        ({"model": "m", "messages": [{"role": "user", "content": "x"}], "service_tier": ["a"]},
                         openai.parse_chat),
                        ({"model": "m", "max_tokens": 1, "messages": [{"role": {}}]}, anthropic.parse_messages)):
        assert payload_or_400(parse, json.dumps(body).encode()) is None


def test_regression_huge_max_tokens_and_n_are_refused() -> None:
    for fields in ({"max_tokens": 2**62}, {"max_tokens": 1024, "n": 2**30}, {"n": 129}):
        raw = json.dumps({"model": "m", "messages": [{"role": "user", "content": "hi"}], **fields}).encode()
        assert payload_or_400(openai.parse_chat, raw) is None
    raw = json.dumps({"model": "m", "max_tokens": 2**62, "messages": [{"role": "user", "content": "hi"}]}).encode()
    assert payload_or_400(anthropic.parse_messages, raw) is None
