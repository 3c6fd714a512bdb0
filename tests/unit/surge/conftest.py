"""Small scenarios for the surge lab's tests: seconds of simulated time, milliseconds to run."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from seawall.surge.scenario import Scenario, parse_scenario

TINY: dict[str, Any] = {
    "name": "tiny",
    "seed": 1,
    "upstream": {"models": [{"name": "chat", "deployments": [
        {"name": "a", "max_in_flight": 8, "base_latency_s": 0.2, "tokens_per_s": 0}]}]},
    "shape": {"prompt_tokens": 50, "max_tokens": 32, "completion_tokens": 8, "stream_fraction": 0.3},
    "client": {"retries": "none", "timeout_s": 30},
    "tiers": {"api": {}, "plus": {}, "free": {}},
    "phases": [
        {"name": "calm", "duration_s": 10, "rates": {"api": 4, "plus": 12, "free": 24}},
        {"name": "surge", "duration_s": 20, "rates": {
            "api": 4, "plus": {"kind": "linear", "start_per_s": 12, "end_per_s": 120},
            "free": {"kind": "exponential", "start_per_s": 24, "end_per_s": 240}}},
        {"name": "after", "duration_s": 10, "rates": {"api": 4, "plus": 12, "free": 24}},
    ],
    "slo": {"api": {"success_rate_pct": 99}},
}


def tiny(**changes: Any) -> Scenario:
    """The tiny scenario with top-level keys replaced."""
    data = copy.deepcopy(TINY)
    data.update(copy.deepcopy(changes))
    return parse_scenario(data)


@pytest.fixture
def tiny_scenario() -> Scenario:
    return tiny()
