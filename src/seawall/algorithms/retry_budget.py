"""Retry budget (Finagle's ``RetryBudget``): retries are a fraction of traffic, never a multiple.

Why: a per-request attempt limit of 3 lets a failing upstream receive 3x the traffic exactly when it
can least take it, and every layer that retries multiplies it again. A budget caps retries as a
share of *recent* traffic: each unique request deposits ``ratio`` (default 0.2) of a retry, each
retry withdraws 1, both over a sliding ``window_s`` (default 10 s, in ``bucket_s`` = 1 s buckets).
A floor of ``min_per_s`` (default 10) retries per second keeps low-traffic deployments retrying.

Over any window that ends at a granted retry::

    retries_in_window <= ratio * requests_in_window + min_per_s * window_s

so under sustained failure at high traffic, amplification (attempts / requests) stays near
``1 + ratio`` instead of ``max_attempts``.

``is_tight`` (less than ``tight_fraction``, default 0.5, of the window's allowance left) lets the
router be stingier with requests that are already retries from the client's SDK (OpenAI/Anthropic
SDKs send ``x-stainless-retry-count``): the client is retrying anyway, so a gateway retry on top
would compound the two layers. Pass the header's value as ``client_retry_count``.
"""

from __future__ import annotations

from seawall.algorithms.window import SlidingCounts

__all__ = ["RetryBudget"]

_REQUESTS, _RETRIES = 0, 1
_EPS = 1e-9


class RetryBudget:
    """Share one per model group (or per deployment). Times are monotonic seconds."""

    __slots__ = (
        "_window",
        "denied_total",
        "min_per_s",
        "ratio",
        "requests_total",
        "retries_total",
        "tight_fraction",
    )

    def __init__(
        self,
        ratio: float = 0.2,
        min_per_s: float = 10.0,
        window_s: float = 10.0,
        *,
        bucket_s: float = 1.0,
        tight_fraction: float = 0.5,
    ) -> None:
        if ratio < 0 or min_per_s < 0 or not 0.0 <= tight_fraction <= 1.0:
            raise ValueError("need ratio >= 0, min_per_s >= 0 and tight_fraction in [0, 1]")
        self.ratio = ratio
        self.min_per_s = min_per_s
        self.tight_fraction = tight_fraction
        self._window = SlidingCounts(window_s, bucket_s, channels=2)
        self.requests_total = 0  # unique requests seen, ever
        self.retries_total = 0  # retries granted, ever
        self.denied_total = 0  # retries refused, ever

    @property
    def window_s(self) -> float:
        return self._window.window_s

    @property
    def attempts_total(self) -> int:
        """First attempts plus granted retries, ever: with ``requests_total``, the amplification."""
        return self.requests_total + self.retries_total

    def on_request(self, now_s: float) -> None:
        """Count one unique request (its first attempt); deposits ``ratio`` of a retry."""
        self._window.add(now_s, _REQUESTS)
        self.requests_total += 1

    def capacity(self, now_s: float) -> float:
        """Retries the current window allows in all: ``ratio * requests + min_per_s * window_s``."""
        return self.ratio * self._window.total(now_s, _REQUESTS) + self.min_per_s * self.window_s

    def available(self, now_s: float) -> float:
        """Retries still allowed in the current window (may be below 0 after deposits expire)."""
        return self.capacity(now_s) - self._window.total(now_s, _RETRIES)

    def is_tight(self, now_s: float) -> bool:
        """True when less than ``tight_fraction`` of the window's allowance is left."""
        return self.available(now_s) < self.tight_fraction * self.capacity(now_s) - _EPS

    def try_retry(self, now_s: float, client_retry_count: int = 0) -> bool:
        """Withdraw one retry if the budget allows it.

        Refused when less than one retry is available, or when the budget is tight and the request
        is already a client retry (``client_retry_count > 0``).
        """
        capacity = self.capacity(now_s)
        available = capacity - self._window.total(now_s, _RETRIES)
        tight = available < self.tight_fraction * capacity - _EPS
        if available < 1.0 - _EPS or (client_retry_count > 0 and tight):
            self.denied_total += 1
            return False
        self._window.add(now_s, _RETRIES)
        self.retries_total += 1
        return True

    def amplification(self, now_s: float) -> float:
        """Attempts per unique request over the current window (1.0 = no retries)."""
        requests = self._window.total(now_s, _REQUESTS)
        retries = self._window.total(now_s, _RETRIES)
        return (requests + retries) / requests if requests else 1.0 + retries
