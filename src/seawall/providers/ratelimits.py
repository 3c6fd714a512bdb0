"""Rate-limit headers as providers send them, read into one report (what the pacer reads).

Both dialects: OpenAI's ``x-ratelimit-{limit,remaining,reset}-{requests,tokens}`` (resets as Go
durations: ``20ms``, ``1s``, ``6m0s``, ``1h2m3.5s``, or plain seconds) and Anthropic's
``anthropic-ratelimit-{requests,tokens,input-tokens,output-tokens}-{limit,remaining,reset}``
(resets as RFC 3339 instants, turned into seconds against the caller's wall clock), and
``retry-after-ms`` / ``retry-after``. Pure translation: no clock of its own (``wall_s`` is an
argument), shared by the upstream edge and its tests; :mod:`seawall.algorithms.pacing` decides.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from seawall.algorithms.pacing import Budget, RateLimitReport

__all__ = ["parse_duration_s", "parse_rate_limits", "parse_retry_after_s", "parse_rfc3339_s"]

#: dimension -> (limit, remaining, reset) header names, OpenAI's dialect
OPENAI_HEADERS: dict[str, tuple[str, str, str]] = {
    "requests": ("x-ratelimit-limit-requests", "x-ratelimit-remaining-requests", "x-ratelimit-reset-requests"),
    "tokens": ("x-ratelimit-limit-tokens", "x-ratelimit-remaining-tokens", "x-ratelimit-reset-tokens"),
}
#: Anthropic's: requests, combined tokens, and the separate input and output token limits
ANTHROPIC_HEADERS: dict[str, tuple[str, str, str]] = {
    dim: (f"anthropic-ratelimit-{name}-limit", f"anthropic-ratelimit-{name}-remaining",
          f"anthropic-ratelimit-{name}-reset")
    for dim, name in (("requests", "requests"), ("tokens", "tokens"), ("input_tokens", "input-tokens"),
                      ("output_tokens", "output-tokens"))
}
_DURATION_UNITS_S = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}
_MAX_RESET_S = 86_400.0  # a reset further than a day away is not a per-minute budget's: ignored


def parse_duration_s(text: str) -> float | None:
    """A reset as OpenAI writes it: a Go duration (``20ms``, ``1s``, ``6m0s``, ``1h2m3.5s``) or plain
    seconds (``0.5``); ``None`` if it is neither or negative."""
    text = text.strip()
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        pass
    else:
        return value if value >= 0.0 and math.isfinite(value) else None
    total = 0.0
    i, n = 0, len(text)
    while i < n:
        j = i
        while j < n and (text[j].isdigit() or text[j] == "."):
            j += 1
        if j == i:
            return None
        k = j
        while k < n and not (text[k].isdigit() or text[k] == "."):
            k += 1
        unit = _DURATION_UNITS_S.get(text[j:k])
        if unit is None:
            return None
        try:
            total += float(text[i:j]) * unit
        except ValueError:
            return None
        i = k
    return total


def _days_from_civil(y: int, m: int, d: int) -> int:
    """Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm)."""
    y -= m <= 2
    era = (y if y >= 0 else y - 399) // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def parse_rfc3339_s(text: str) -> float | None:
    """Unix seconds of an RFC 3339 instant (``2026-12-07T23:20:26Z``, fractions and ``+01:00``
    offsets allowed); ``None`` if it is not one."""
    s = text.strip()
    if len(s) < 20 or s[4] != "-" or s[7] != "-" or s[10] not in "Tt " or s[13] != ":" or s[16] != ":":
        return None
    try:
        year, month, day = int(s[0:4]), int(s[5:7]), int(s[8:10])
        hour, minute, second = int(s[11:13]), int(s[14:16]), int(s[17:19])
        rest = s[19:]
        frac = 0.0
        if rest.startswith("."):
            j = 1
            while j < len(rest) and rest[j].isdigit():
                j += 1
            frac = float("0" + rest[:j]) if j > 1 else 0.0
            rest = rest[j:]
        if rest in ("Z", "z"):
            offset_s = 0
        elif len(rest) == 6 and rest[0] in "+-" and rest[3] == ":":
            offset_s = (int(rest[1:3]) * 3600 + int(rest[4:6]) * 60) * (1 if rest[0] == "+" else -1)
        else:
            return None
    except ValueError:
        return None
    if not (1 <= month <= 12 and 1 <= day <= 31 and hour <= 23 and minute <= 59 and second <= 60):
        return None
    days = _days_from_civil(year, month, day)
    return days * 86400.0 + hour * 3600 + minute * 60 + second + frac - offset_s


def parse_retry_after_s(headers: Mapping[str, str]) -> float | None:
    """Seconds from ``retry-after-ms`` (the finer, preferred) or ``retry-after`` (delta seconds; HTTP
    dates are not trusted); a negative hint is 0, a non-number ``None``."""
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is None:
            continue
        try:
            seconds = float(value) * scale
        except ValueError:
            return None
        return max(0.0, seconds) if math.isfinite(seconds) else None
    return None


def _number(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        x = float(value)
    except ValueError:
        return None
    return x if math.isfinite(x) and x >= 0.0 else None


def parse_rate_limits(headers: Mapping[str, str], wall_s: float) -> RateLimitReport | None:
    """The budgets an answer's headers state (either dialect) and its retry hint; ``None`` when it
    states neither. ``headers``: lower-case names. ``wall_s``: Unix seconds now, for Anthropic's
    reset instants. A dimension needs a numeric limit and remaining; an unreadable reset is ``None``."""
    budgets: list[Budget] = []
    for table, instants in ((OPENAI_HEADERS, False), (ANTHROPIC_HEADERS, True)):
        for dim, (limit_name, remaining_name, reset_name) in table.items():
            limit, remaining = _number(headers.get(limit_name)), _number(headers.get(remaining_name))
            if limit is None or remaining is None:
                continue
            raw = headers.get(reset_name)
            reset_s: float | None = None
            if raw is not None:
                if instants:
                    at = parse_rfc3339_s(raw)
                    reset_s = max(0.0, at - wall_s) if at is not None else parse_duration_s(raw)
                else:
                    reset_s = parse_duration_s(raw)
                    if reset_s is None:  # some compatibles send an instant here too
                        at = parse_rfc3339_s(raw)
                        reset_s = max(0.0, at - wall_s) if at is not None else None
            if reset_s is not None and reset_s > _MAX_RESET_S:
                reset_s = None
            budgets.append(Budget(dim, limit, min(remaining, limit), reset_s))
    retry_after_s = parse_retry_after_s(headers)
    if not budgets and retry_after_s is None:
        return None
    return RateLimitReport(tuple(budgets), retry_after_s)
