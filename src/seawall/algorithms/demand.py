"""Recent peak demand per criticality: how much room to keep free for more critical work.

Why: reserved shares are fixed fractions of the limit, and the traffic that matters rarely has
the size of its share. A paying tier that uses 12% of the limit with a 30% share wastes 18% if its
share is held idle, and is shed if it needs 45% while a free surge holds the rest. Telephone
exchanges solved this long ago with *trunk reservation*: a low-priority call is taken only while
more than ``r`` circuits stay free for the high-priority calls that may come next. Here ``r`` is
learned: for each criticality, the most work it had in flight or waiting (units) in the last one to
two windows of ``window_s``. Less critical work may fill the limit only up to what leaves that much
room, less what those tiers already hold, so a paying request that arrives finds capacity free at
once instead of waiting for a free-tier answer to finish (2-30 s for an LLM), and the free tiers
still use every unit the paying tiers did not need recently.

A peak over a window of many service times is the margin: with Poisson arrivals it sits a few
standard deviations above the mean, and it follows a paying surge within one arrival (the demand
observed includes the paying work queued, which is then started first).

Times are monotonic seconds passed in by the caller; units are the limiter's work units.
"""

from __future__ import annotations

from seawall.core.types import Criticality

__all__ = ["PeakDemand"]

_TIERS = len(Criticality)


class PeakDemand:
    """The peak of observed demand per criticality over the last ``window_s`` to ``2 * window_s``.

    Two buckets: the window being filled and the one before it; ``peak`` is the larger, so a peak
    is remembered for at least one whole window and at most two. ``window_s`` (default 30 s) should
    span many service times of the upstream; ``0`` disables the reservation (``peak`` is 0).
    """

    __slots__ = ("_current", "_previous", "_start_s", "window_s")

    def __init__(self, window_s: float = 30.0) -> None:
        if not window_s >= 0.0:
            raise ValueError("window_s must be >= 0")
        self.window_s = window_s
        self._current = [0.0] * _TIERS
        self._previous = [0.0] * _TIERS
        self._start_s: float | None = None

    def observe(self, crit: int, units: float, now_s: float) -> None:
        """``crit`` has ``units`` of work in flight or waiting at ``now_s``."""
        start = self._start_s
        if start is None or now_s - start >= self.window_s:
            self._roll(now_s)
        current = self._current
        if units > current[crit]:
            current[crit] = units

    def peak(self, crit: int, now_s: float) -> float:
        """The most work ``crit`` had in flight or waiting recently, in units."""
        if not self.window_s:
            return 0.0
        start = self._start_s
        if start is None:
            return 0.0
        if now_s - start >= self.window_s:
            self._roll(now_s)
        a, b = self._current[crit], self._previous[crit]
        return a if a > b else b

    def _roll(self, now_s: float) -> None:
        start = self._start_s
        if start is not None and now_s - start < 2.0 * self.window_s:
            self._previous = self._current
        else:  # a whole window passed unobserved: nothing was there
            self._previous = [0.0] * _TIERS
        self._current = [0.0] * _TIERS
        self._start_s = now_s
