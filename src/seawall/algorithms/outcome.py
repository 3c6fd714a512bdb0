"""What happened to one upstream attempt, decided once for retries, breakers and stats alike.

Finagle's lesson: if the retry filter, the circuit breaker and the metrics each decide for
themselves what a "failure" is, they disagree, and the disagreement is where outages hide (a
breaker that opens on upstream 429s turns a rate limit into a full outage). So every attempt is
classified once, by :func:`classify`, into an :class:`Outcome`, and every consumer reads that.

This module also holds :class:`SlidingCounts`, the bucketed sliding window that the breaker (attempts,
failures) and the retry budget (requests, retries) both count in.
"""

from __future__ import annotations

import enum
import math

__all__ = ["ERROR_KINDS", "Outcome", "SlidingCounts", "classify"]

#: Error kinds the upstream edge reports when no (complete) response arrived. Any other non-None
#: kind is treated like these (a failure); only ``"cancelled"`` is special.
ERROR_KINDS = frozenset({"connect", "timeout", "read", "protocol", "cancelled"})


class Outcome(enum.Enum):
    """The class of one attempt's result.

    - ``SUCCESS``: 2xx, completed. Evidence the deployment works.
    - ``FAILURE``: the deployment is broken: no connection, timeout, broken stream, 5xx.
      Counts against the breaker; worth retrying elsewhere.
    - ``OVERLOADED``: the deployment is alive but rate-limiting (429, Anthropic's 529). Never counts
      against the breaker (its headroom signal and the adaptive limit handle it); worth retrying
      elsewhere.
    - ``CLIENT_ERROR``: the request itself is wrong (400, 404, 413, 422...). Neither a failure nor a
      success; retrying cannot help.
    - ``CANCELLED``: the caller gave up (client disconnect, hedge lost). Tells nothing about the
      deployment; never retried.
    """

    SUCCESS = "success"
    FAILURE = "failure"
    OVERLOADED = "overloaded"
    CLIENT_ERROR = "client_error"
    CANCELLED = "cancelled"

    @property
    def retryable(self) -> bool:
        """Whether another attempt (on another deployment, within the retry budget) may help."""
        return self is Outcome.FAILURE or self is Outcome.OVERLOADED


def classify(status: int | None, error_kind: str | None) -> Outcome:
    """Classify one upstream attempt from its HTTP status and/or the edge's error kind.

    ``status`` is the upstream HTTP status if a response head arrived, else ``None``.
    ``error_kind`` is set by the upstream edge when the exchange did not complete (see
    :data:`ERROR_KINDS`); it wins over ``status`` because a stream that breaks after a 200 head is
    a failure, not a success.

    Rules, first match wins:

    1. ``error_kind == "cancelled"`` -> ``CANCELLED``.
    2. any other ``error_kind`` (connect, timeout, read, protocol, ...) -> ``FAILURE``.
    3. no status and no error -> ``FAILURE`` (nothing usable came back).
    4. 499 (client closed request, as proxies report it) -> ``CANCELLED``; 2xx -> ``SUCCESS``.
    5. 429, 529 -> ``OVERLOADED``.
    6. 401, 403 -> ``FAILURE``: the client was already authenticated by the gateway, so an
       upstream auth refusal means *this deployment's* credentials are wrong; failing over to a
       deployment with working credentials is the right response.
    7. 408 (upstream request timeout) -> ``FAILURE``, like a timeout seen by the edge.
    8. other 4xx -> ``CLIENT_ERROR``.
    9. 5xx, and anything else (1xx, 3xx: a misbehaving upstream) -> ``FAILURE``.
    """
    if error_kind is not None:
        return Outcome.CANCELLED if error_kind == "cancelled" else Outcome.FAILURE
    if status is None:
        return Outcome.FAILURE
    if status == 499:
        return Outcome.CANCELLED
    if 200 <= status < 300:
        return Outcome.SUCCESS
    if status == 429 or status == 529:
        return Outcome.OVERLOADED
    if 400 <= status < 500 and status not in (401, 403, 408):
        return Outcome.CLIENT_ERROR
    return Outcome.FAILURE


class SlidingCounts:
    """Integer counters over a sliding time window, kept in a ring of fixed-width buckets.

    ``window_s`` (default 10 s) is cut into ``bucket_s`` buckets (default 1 s; the window is rounded
    up to whole buckets). A total covers the current bucket and the ``n_buckets - 1`` before it,
    i.e. between ``window_s - bucket_s`` and ``window_s`` of history. Memory is
    ``n_buckets * channels`` ints however many events arrive; totals are kept running, so reading
    them is O(channels) plus O(expired buckets). Counts are ints so that expiring a bucket
    subtracts exactly (no float drift).

    Time that goes backwards is clamped to the latest time seen: the event lands in the newest
    bucket.
    """

    __slots__ = ("_counts", "_epoch", "_totals", "bucket_s", "channels", "n_buckets")

    def __init__(self, window_s: float = 10.0, bucket_s: float = 1.0, channels: int = 2) -> None:
        if bucket_s <= 0 or window_s < bucket_s or channels < 1:
            raise ValueError("need bucket_s > 0, window_s >= bucket_s and channels >= 1")
        self.bucket_s = bucket_s
        self.n_buckets = math.ceil(window_s / bucket_s - 1e-9)
        self.channels = channels
        self._counts = [0] * (self.n_buckets * channels)
        self._totals = [0] * channels
        self._epoch: int | None = None

    @property
    def window_s(self) -> float:
        """The effective window: ``n_buckets * bucket_s`` seconds."""
        return self.n_buckets * self.bucket_s

    def _advance(self, now_s: float) -> int:
        epoch = math.floor(now_s / self.bucket_s)
        last = self._epoch
        if last is None:
            self._epoch = epoch
            return epoch
        if epoch <= last:
            return last
        stale = min(epoch - last, self.n_buckets)
        ch = self.channels
        for e in range(epoch - stale + 1, epoch + 1):
            base = (e % self.n_buckets) * ch
            for c in range(ch):
                self._totals[c] -= self._counts[base + c]
                self._counts[base + c] = 0
        self._epoch = epoch
        return epoch

    def add(self, now_s: float, channel: int, n: int = 1) -> None:
        """Count ``n`` events on ``channel`` at ``now_s``."""
        epoch = self._advance(now_s)
        self._counts[(epoch % self.n_buckets) * self.channels + channel] += n
        self._totals[channel] += n

    def total(self, now_s: float, channel: int) -> int:
        """Events on ``channel`` within the window ending at ``now_s``."""
        self._advance(now_s)
        return self._totals[channel]

    def clear(self) -> None:
        self._counts = [0] * (self.n_buckets * self.channels)
        self._totals = [0] * self.channels
