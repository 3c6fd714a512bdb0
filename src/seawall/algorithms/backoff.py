"""Retry backoff with jitter (AWS Architecture Blog, "Exponential Backoff And Jitter", 2015).

Why jitter: retries that wait the same exponential delay arrive together and hit a recovering
upstream as one synchronised wave. Full jitter spreads them uniformly over the whole interval,
which minimises both total work and completion time among the schemes compared there.

The random sample ``u`` in [0, 1) is an argument so the same code runs on a virtual clock in the
simulator and in seeded tests.
"""

from __future__ import annotations

__all__ = ["decorrelated_jitter", "exponential_ceiling_s", "full_jitter"]

_MAX_EXPONENT = 1000  # 2.0**1024 overflows a float; the cap has long taken over by then


def exponential_ceiling_s(attempt: int, base_s: float, cap_s: float) -> float:
    """``min(cap_s, base_s * 2**attempt)``, safe for any ``attempt >= 0``."""
    if attempt < 0 or base_s < 0 or cap_s < 0:
        raise ValueError("attempt, base_s and cap_s must be >= 0")
    return min(cap_s, base_s * 2.0 ** min(attempt, _MAX_EXPONENT))


def full_jitter(attempt: int, base_s: float, cap_s: float, u: float) -> float:
    """Seconds to wait before retry number ``attempt`` (0 = the first retry).

    ``u * min(cap_s, base_s * 2**attempt)``: uniform in ``[0, min(cap_s, base_s * 2**attempt))``.
    Typical values for an LLM gateway: ``base_s`` 0.1 to 0.5 s, ``cap_s`` a few seconds, since the
    request's deadline bounds the total anyway.
    """
    return u * exponential_ceiling_s(attempt, base_s, cap_s)


def decorrelated_jitter(previous_s: float, base_s: float, cap_s: float, u: float) -> float:
    """AWS "decorrelated jitter": ``min(cap_s, uniform(base_s, 3 * previous_s))``.

    Feed the returned delay back as ``previous_s`` next time; start with ``previous_s = base_s``.
    Grows like exponential backoff on average but each delay depends only on the last one, so it
    needs no attempt counter. Always within ``[min(base_s, cap_s), cap_s]``.
    """
    if base_s < 0 or cap_s < 0:
        raise ValueError("base_s and cap_s must be >= 0")
    high_s = max(base_s, 3.0 * previous_s)
    return min(cap_s, base_s + u * (high_s - base_s))
