"""A sliding window of counts in fixed time buckets, shared by the breaker and the retry budget."""

from __future__ import annotations

import math

__all__ = ["SlidingCounts"]

_floor = math.floor


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
        epoch = _floor(now_s / self.bucket_s)
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
        epoch = _floor(now_s / self.bucket_s)
        last = self._epoch
        if last is None or epoch > last:
            epoch = self._advance(now_s)
        else:
            epoch = last  # _advance would change nothing
        self._counts[(epoch % self.n_buckets) * self.channels + channel] += n
        self._totals[channel] += n

    def total(self, now_s: float, channel: int) -> int:
        """Events on ``channel`` within the window ending at ``now_s``."""
        last = self._epoch
        if last is None or _floor(now_s / self.bucket_s) > last:  # else _advance would change nothing
            self._advance(now_s)
        return self._totals[channel]

    def clear(self) -> None:
        self._counts = [0] * (self.n_buckets * self.channels)
        self._totals = [0] * self.channels
