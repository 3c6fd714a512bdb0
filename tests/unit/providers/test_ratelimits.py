"""Rate-limit headers of both dialects (providers/ratelimits.py): reset formats, instants, hints."""

import pytest

from seawall.algorithms.pacing import Budget, RateLimitReport
from seawall.providers.ratelimits import parse_duration_s, parse_rate_limits, parse_retry_after_s, parse_rfc3339_s

# -- parsing ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "seconds"), [
    ("1s", 1.0), ("6m0s", 360.0), ("20ms", 0.02), ("1h2m3.5s", 3723.5), ("0.5", 0.5), ("17ms", 0.017),
    ("2m30s", 150.0), ("0s", 0.0), ("150us", 0.00015),
])
def test_openai_reset_durations(text, seconds):
    assert parse_duration_s(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "s", "1x", "-1s", "abc", "1.2.3s", "nan"])
def test_garbage_durations_are_none(text):
    assert parse_duration_s(text) is None


def test_rfc3339_instants():
    assert parse_rfc3339_s("1970-01-01T00:00:00Z") == 0.0
    assert parse_rfc3339_s("2024-02-29T12:00:01Z") == 1709208001.0
    assert parse_rfc3339_s("2024-02-29T13:00:01.250+01:00") == pytest.approx(1709208001.25)
    assert parse_rfc3339_s("2024-02-29T11:30:01-00:30") == 1709208001.0
    for bad in ("2024-02-29", "2024-13-01T00:00:00Z", "2024-02-29T12:00:01", "yesterday", "2024-02-29T12:00:01+0100"):
        assert parse_rfc3339_s(bad) is None


def test_retry_after_prefers_milliseconds_and_refuses_garbage():
    assert parse_retry_after_s({"retry-after-ms": "250", "retry-after": "1"}) == 0.25
    assert parse_retry_after_s({"retry-after": "2"}) == 2.0
    assert parse_retry_after_s({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}) is None
    assert parse_retry_after_s({"retry-after": "-3"}) == 0.0
    assert parse_retry_after_s({"retry-after": "inf"}) is None
    assert parse_retry_after_s({}) is None


def test_openai_dialect():
    report = parse_rate_limits({
        "x-ratelimit-limit-requests": "60", "x-ratelimit-remaining-requests": "59",
        "x-ratelimit-reset-requests": "1s", "x-ratelimit-limit-tokens": "150000",
        "x-ratelimit-remaining-tokens": "149984", "x-ratelimit-reset-tokens": "6m0s",
    }, wall_s=0.0)
    assert report == RateLimitReport((Budget("requests", 60.0, 59.0, 1.0), Budget("tokens", 150000.0, 149984.0, 360.0)))


def test_anthropic_dialect_resets_are_instants_against_the_wall_clock():
    wall = parse_rfc3339_s("2026-12-07T23:20:26Z")
    assert wall is not None
    report = parse_rate_limits({
        "anthropic-ratelimit-requests-limit": "50", "anthropic-ratelimit-requests-remaining": "49",
        "anthropic-ratelimit-requests-reset": "2026-12-07T23:20:28Z",
        "anthropic-ratelimit-input-tokens-limit": "40000", "anthropic-ratelimit-input-tokens-remaining": "39000",
        "anthropic-ratelimit-input-tokens-reset": "2026-12-07T23:20:27.5Z",
        "retry-after": "3",
    }, wall_s=wall)
    assert report is not None
    assert report.budgets == (Budget("requests", 50.0, 49.0, 2.0), Budget("input_tokens", 40000.0, 39000.0, 1.5))
    assert report.retry_after_s == 3.0


def test_partial_or_garbage_headers():
    assert parse_rate_limits({}, 0.0) is None
    assert parse_rate_limits({"x-ratelimit-remaining-requests": "5"}, 0.0) is None  # no limit
    assert parse_rate_limits({"x-ratelimit-limit-requests": "NaN", "x-ratelimit-remaining-requests": "5"}, 0.0) is None
    report = parse_rate_limits({"x-ratelimit-limit-requests": "10", "x-ratelimit-remaining-requests": "12",
                                "x-ratelimit-reset-requests": "soon"}, 0.0)
    assert report is not None and report.budgets == (Budget("requests", 10.0, 10.0, None),)  # clamped; no reset
    only_hint = parse_rate_limits({"retry-after": "1"}, 0.0)
    assert only_hint == RateLimitReport((), 1.0)
