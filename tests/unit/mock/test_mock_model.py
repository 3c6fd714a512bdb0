"""The mock's pure latency/token model, fault draws, overrides and embeddings."""

from __future__ import annotations

import base64
import math
import struct

import pytest

from seawall.env import SystemRng
from seawall.mock.config import MockConfig
from seawall.mock.model import (
    Fault,
    Overrides,
    choose_fault,
    content_text,
    embedding,
    embedding_inputs,
    encode_embedding,
    input_tokens,
    parse_overrides,
    plan_chat,
    retry_after_s,
    token_text,
)


def test_plan_times_tokens_from_base_latency_then_at_tokens_per_s() -> None:
    config = MockConfig(
        base_latency_s=0.02, first_token_delay_s=0.03, tokens_per_s=100.0, completion_tokens=5
    )
    plan = plan_chat(config, max_tokens=None)
    assert plan.first_token_s == pytest.approx(0.05)
    assert plan.token_interval_s == pytest.approx(0.01)
    assert plan.total_s == pytest.approx(0.05 + 4 * 0.01)
    assert (plan.completion_tokens, plan.finish_reason) == (5, "stop")


def test_tokens_due_counts_tokens_whose_time_has_come() -> None:
    plan = plan_chat(MockConfig(tokens_per_s=100.0, completion_tokens=5), max_tokens=None)
    assert plan.tokens_due(-0.001) == 0
    assert plan.tokens_due(0.0) == 1
    assert plan.tokens_due(0.0099) == 1
    assert plan.tokens_due(plan.next_due_s(1)) == 2  # exactly on time is due, despite rounding
    assert plan.tokens_due(0.035) == 4
    assert plan.tokens_due(10.0) == 5


def test_zero_tokens_per_s_means_everything_at_once() -> None:
    plan = plan_chat(MockConfig(tokens_per_s=0.0, completion_tokens=7), max_tokens=None)
    assert plan.token_interval_s == 0.0
    assert plan.total_s == plan.first_token_s
    assert plan.tokens_due(0.0) == 7


@pytest.mark.parametrize(
    ("max_tokens", "tokens", "finish_reason"),
    [(None, 16, "stop"), (3, 3, "length"), (16, 16, "stop"), (100, 16, "stop")],
)
def test_max_tokens_caps_the_completion(max_tokens: int | None, tokens: int, finish_reason: str) -> None:
    plan = plan_chat(MockConfig(), max_tokens=max_tokens)
    assert (plan.completion_tokens, plan.finish_reason) == (tokens, finish_reason)


def test_overrides_replace_base_latency_and_token_count() -> None:
    config = MockConfig(base_latency_s=0.02, first_token_delay_s=0.01, completion_tokens=16)
    plan = plan_chat(config, max_tokens=4, overrides=Overrides(latency_s=0.5, completion_tokens=2))
    assert plan.first_token_s == pytest.approx(0.51)
    assert (plan.completion_tokens, plan.finish_reason) == (2, "stop")


def test_content_is_one_word_per_token_and_equals_the_streamed_pieces() -> None:
    assert content_text(3) == "tok0 tok1 tok2"
    assert "".join(token_text(i) for i in range(16)) == content_text(16)
    assert content_text(0) == ""


def test_fault_rates_partition_the_unit_interval() -> None:
    config = MockConfig(error_rate=0.1, reset_rate=0.2, stall_rate=0.3)
    assert choose_fault(config, 0.05) is Fault.ERROR
    assert choose_fault(config, 0.1) is Fault.RESET
    assert choose_fault(config, 0.29) is Fault.RESET
    assert choose_fault(config, 0.55) is Fault.STALL
    assert choose_fault(config, 0.61) is None
    assert choose_fault(MockConfig(), 0.0) is None


def test_seeded_fault_draws_are_reproducible_and_near_the_configured_rate() -> None:
    config = MockConfig(error_rate=0.25)
    rng_a, rng_b, rng_c = SystemRng(42), SystemRng(42), SystemRng(43)
    draws_a = [choose_fault(config, rng_a.random()) for _ in range(2000)]
    draws_b = [choose_fault(config, rng_b.random()) for _ in range(2000)]
    assert draws_a == draws_b
    assert draws_a != [choose_fault(config, rng_c.random()) for _ in range(2000)]
    assert 0.2 < draws_a.count(Fault.ERROR) / 2000 < 0.3


def test_parse_overrides_reads_headers_and_the_body_wins() -> None:
    assert parse_overrides(None, None, None) == Overrides()
    assert parse_overrides("0.5", "stall", None) == Overrides(latency_s=0.5, fault=Fault.STALL)
    both = parse_overrides("0.5", "stall", {"latency_s": 0, "fault": "429", "completion_tokens": 2})
    assert both == Overrides(latency_s=0.0, fault=Fault.RATE_LIMIT, completion_tokens=2)
    assert parse_overrides(None, "529", None).fault is Fault.OVERLOADED
    assert parse_overrides(None, None, {"fault": 529}).fault is Fault.OVERLOADED  # numbers too


@pytest.mark.parametrize(
    ("latency", "fault", "body", "message"),
    [
        ("soon", None, None, "x-mock-latency-s"),
        ("-1", None, None, "x-mock-latency-s"),
        (None, "explode", None, "x-mock-fault"),
        (None, None, {"fault": "nope"}, "mock.fault"),
        (None, None, {"latency_s": "1"}, "mock.latency_s"),
        (None, None, {"completion_tokens": -2}, "mock.completion_tokens"),
        (None, None, {"speed": 1}, "unknown 'mock' fields"),
        (None, None, [1], "'mock' must be an object"),
    ],
)
def test_bad_overrides_are_rejected(
    latency: str | None, fault: str | None, body: object, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        parse_overrides(latency, fault, body)


def test_retry_after_is_one_default_service_time() -> None:
    config = MockConfig(base_latency_s=0.02, tokens_per_s=200.0, completion_tokens=16)
    assert retry_after_s(config) == pytest.approx(0.02 + 15 / 200)
    assert retry_after_s(config.with_changes({"tokens_per_s": 0})) == pytest.approx(0.02)


def test_embeddings_are_deterministic_unit_vectors_of_the_asked_size() -> None:
    a = embedding("hello", 8)
    assert a == embedding("hello", 8)
    assert a != embedding("hellp", 8)
    assert len(embedding("hello", 3)) == 3
    assert math.fsum(v * v for v in a) == pytest.approx(1.0)
    assert embedding([1, 2, 3], 4) == embedding([1, 2, 3], 4) != embedding([1, 2, 4], 4)


def test_base64_encoding_is_little_endian_float32() -> None:
    vector = embedding("x", 4)
    raw = base64.b64decode(encode_embedding(vector, "base64"))  # type: ignore[arg-type]
    decoded = struct.unpack("<4f", raw)
    assert decoded == pytest.approx(vector, rel=1e-6)
    assert encode_embedding(vector, "float") == vector
    assert encode_embedding(vector, None) == vector


def test_embedding_inputs_and_token_counts() -> None:
    assert embedding_inputs("abc") == ["abc"]
    assert embedding_inputs([1, 2, 3]) == [[1, 2, 3]]
    assert embedding_inputs(["a", "b"]) == ["a", "b"]
    assert embedding_inputs([[1], [2, 3]]) == [[1], [2, 3]]
    assert input_tokens("a" * 40) == 10
    assert input_tokens("") == 1
    assert input_tokens([5, 6, 7]) == 3
