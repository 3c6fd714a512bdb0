"""Rate-limit headers -> headroom, and retry hints, as both providers send them."""

from __future__ import annotations

import pytest
from multidict import CIMultiDict

from seawall.edges.upstreams import (
    ANTHROPIC_RATE_LIMITS,
    OPENAI_RATE_LIMITS,
    headroom_from,
    retry_after_from,
)


def test_no_rate_limit_headers_means_unknown_headroom() -> None:
    assert headroom_from({"content-type": "application/json"}) is None


def test_openai_style_requests_pair() -> None:
    headers = {"x-ratelimit-limit-requests": "200", "x-ratelimit-remaining-requests": "50"}
    assert headroom_from(headers) == pytest.approx(0.25)


def test_the_scarcest_limit_wins() -> None:
    headers = {
        "x-ratelimit-limit-requests": "100",
        "x-ratelimit-remaining-requests": "90",
        "x-ratelimit-limit-tokens": "10000",
        "x-ratelimit-remaining-tokens": "1500",
    }
    assert headroom_from(headers) == pytest.approx(0.15)


def test_anthropic_style_including_input_and_output_token_limits() -> None:
    headers = {
        "anthropic-ratelimit-requests-limit": "50",
        "anthropic-ratelimit-requests-remaining": "49",
        "anthropic-ratelimit-input-tokens-limit": "40000",
        "anthropic-ratelimit-input-tokens-remaining": "30000",
        "anthropic-ratelimit-output-tokens-limit": "8000",
        "anthropic-ratelimit-output-tokens-remaining": "400",
    }
    assert headroom_from(headers) == pytest.approx(0.05)
    assert headroom_from(headers, ANTHROPIC_RATE_LIMITS) == pytest.approx(0.05)
    assert headroom_from(headers, OPENAI_RATE_LIMITS) is None  # an adapter reads only its own style


def test_anthropic_combined_tokens_pair() -> None:
    headers = {"anthropic-ratelimit-tokens-limit": "1000", "anthropic-ratelimit-tokens-remaining": "600"}
    assert headroom_from(headers, ANTHROPIC_RATE_LIMITS) == pytest.approx(0.6)


def test_header_names_are_case_insensitive_on_real_responses() -> None:
    headers = CIMultiDict({"X-RateLimit-Limit-Requests": "10", "X-RateLimit-Remaining-Requests": "4"})
    assert headroom_from(headers) == pytest.approx(0.4)


@pytest.mark.parametrize(
    ("remaining", "limit", "expected"),
    [
        ("0", "10", 0.0),
        ("0", "0", 0.0),  # a limit of zero allows nothing
        ("12", "10", 1.0),  # clamped
        ("-3", "10", 0.0),  # clamped
        ("10", "10", 1.0),
    ],
)
def test_ratios_stay_in_the_unit_interval(remaining: str, limit: str, expected: float) -> None:
    headers = {"x-ratelimit-limit-requests": limit, "x-ratelimit-remaining-requests": remaining}
    assert headroom_from(headers) == expected


@pytest.mark.parametrize(
    "headers",
    [
        {"x-ratelimit-remaining-requests": "5"},  # half a pair
        {"x-ratelimit-limit-requests": "10"},
        {"x-ratelimit-limit-requests": "ten", "x-ratelimit-remaining-requests": "5"},
        {"x-ratelimit-limit-requests": "-1", "x-ratelimit-remaining-requests": "5"},
        {"x-ratelimit-limit-requests": "10", "x-ratelimit-remaining-requests": "nan"},
    ],
)
def test_incomplete_or_garbled_pairs_are_ignored(headers: dict[str, str]) -> None:
    assert headroom_from(headers) is None


def test_a_garbled_pair_does_not_hide_a_good_one() -> None:
    headers = {
        "x-ratelimit-limit-requests": "x",
        "x-ratelimit-remaining-requests": "5",
        "x-ratelimit-limit-tokens": "100",
        "x-ratelimit-remaining-tokens": "70",
    }
    assert headroom_from(headers) == pytest.approx(0.7)


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({}, None),
        ({"retry-after": "3"}, 3.0),
        ({"retry-after": "1.5"}, 1.5),
        ({"retry-after-ms": "250", "retry-after": "1"}, 0.25),  # the finer one wins
        ({"retry-after": "-2"}, 0.0),
        ({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}, None),  # HTTP dates are not trusted
    ],
)
def test_retry_after(headers: dict[str, str], expected: float | None) -> None:
    assert retry_after_from(headers) == expected
