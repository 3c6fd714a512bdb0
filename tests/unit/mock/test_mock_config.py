"""MockConfig validation: bad values and unknown fields are refused with the field's name."""

from __future__ import annotations

import pytest

from seawall.mock.config import MockConfig


def test_defaults_match_the_documented_latency_model() -> None:
    config = MockConfig()
    assert (config.base_latency_s, config.tokens_per_s, config.completion_tokens) == (0.02, 200.0, 16)
    assert config.max_in_flight is None
    assert config.error_rate == config.reset_rate == config.stall_rate == 0.0


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"base_latency_s": -0.1}, "base_latency_s"),
        ({"first_token_delay_s": float("inf")}, "first_token_delay_s"),
        ({"tokens_per_s": -1}, "tokens_per_s"),
        ({"error_rate": 1.5}, "error_rate"),
        ({"error_rate": 0.6, "reset_rate": 0.6}, "error_rate' + 'reset_rate"),
        ({"completion_tokens": -1}, "completion_tokens"),
        ({"max_in_flight": -1}, "max_in_flight"),
        ({"embedding_dimensions": 0}, "embedding_dimensions"),
        ({"models": []}, "models"),
        ({"base_latency_s": "fast"}, "base_latency_s"),
        ({"base_latency_s": True}, "base_latency_s"),
        ({"completion_tokens": 2.5}, "completion_tokens"),
        ({"max_in_flight": False}, "max_in_flight"),
        ({"models": "mock-chat"}, "models"),
        ({"latency_s": 1}, "unknown mock config field 'latency_s'"),
    ],
)
def test_invalid_changes_are_refused_naming_the_field(changes: dict[str, object], field: str) -> None:
    with pytest.raises(ValueError, match=field.replace("+", r"\+")):
        MockConfig().with_changes(changes)


def test_with_changes_converts_json_values_and_leaves_the_original_alone() -> None:
    original = MockConfig()
    changed = original.with_changes({"base_latency_s": 1, "max_in_flight": 4, "models": ["a", "b"]})
    assert changed.base_latency_s == 1.0 and isinstance(changed.base_latency_s, float)
    assert changed.max_in_flight == 4
    assert changed.models == ("a", "b")
    assert original.max_in_flight is None
    assert changed.with_changes({"max_in_flight": None}).max_in_flight is None


def test_to_dict_round_trips_through_from_mapping() -> None:
    config = MockConfig(error_rate=0.1, reset_rate=0.2, seed=3, models=("x",))
    assert MockConfig.from_mapping(config.to_dict()) == config


def test_rates_summing_to_exactly_one_are_allowed() -> None:
    config = MockConfig(error_rate=0.1, reset_rate=0.2, stall_rate=0.7)
    assert config.error_rate + config.reset_rate + config.stall_rate == pytest.approx(1.0)
