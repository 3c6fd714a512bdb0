"""GCRA (generic cell rate algorithm): a token bucket stored as one number per key.

``rate_per_s`` cells per second with a burst of ``burst`` cells. For each key only the
theoretical arrival time (TAT) is kept, so a million keys cost a million floats. The keyed variant
is bounded: when it holds ``max_keys`` it evicts the least recently touched key, which can only
make the limiter more lenient, never wrongly strict.
"""

from __future__ import annotations

from collections import OrderedDict

__all__ = ["Gcra", "KeyedGcra", "gcra_reset_s", "gcra_take"]


def gcra_take(tat: float, now_s: float, interval_s: float, burst: float, cost: float) -> tuple[float, float]:
    """The one GCRA step every limiter here uses (and the Redis quota script mirrors line for line).

    ``tat`` is the stored theoretical arrival time, ``interval_s`` seconds per cell, ``burst`` the
    bucket size in cells. Returns ``(new_tat, wait_s)``: ``wait_s == 0.0`` means the ``cost`` cells
    were taken and ``new_tat`` is the state to store; otherwise nothing was taken and ``wait_s`` is
    how long until it would be allowed (``inf`` if ``cost`` exceeds the bucket itself).
    """
    if cost > burst:
        return tat, float("inf")
    base = tat if tat > now_s else now_s
    new_tat = base + interval_s * cost
    allow_at = new_tat - interval_s * burst
    if allow_at > now_s:
        return tat, allow_at - now_s
    return new_tat, 0.0


def gcra_reset_s(tat: float, now_s: float) -> float:
    """Seconds until the bucket is full again (what ``x-ratelimit-reset-*`` headers report)."""
    return tat - now_s if tat > now_s else 0.0


class Gcra:
    __slots__ = ("burst", "interval_s", "tat")

    def __init__(self, rate_per_s: float, burst: int) -> None:
        if rate_per_s <= 0 or burst < 1:
            raise ValueError("rate_per_s must be > 0 and burst >= 1")
        self.interval_s = 1.0 / rate_per_s
        self.burst = burst
        self.tat = 0.0

    def take(self, now_s: float, cost: float = 1.0) -> float:
        """Take ``cost`` cells; return 0.0 if allowed, else seconds until it would be."""
        self.tat, wait_s = gcra_take(self.tat, now_s, self.interval_s, self.burst, cost)
        return wait_s

    def would_wait(self, now_s: float, cost: float = 1.0) -> float:
        """Like :meth:`take` without taking anything."""
        tat = max(self.tat, now_s)
        return max(0.0, tat + self.interval_s * cost - self.interval_s * self.burst - now_s)


class KeyedGcra:
    """One GCRA per key (client address, API key), bounded to ``max_keys`` entries (LRU)."""

    __slots__ = ("_tats", "burst", "interval_s", "max_keys")

    def __init__(self, rate_per_s: float, burst: int, max_keys: int = 100_000) -> None:
        if rate_per_s <= 0 or burst < 1 or max_keys < 1:
            raise ValueError("rate_per_s must be > 0, burst >= 1, max_keys >= 1")
        self.interval_s = 1.0 / rate_per_s
        self.burst = burst
        self.max_keys = max_keys
        self._tats: OrderedDict[str, float] = OrderedDict()

    def __len__(self) -> int:
        return len(self._tats)

    def would_wait(self, key: str, now_s: float, cost: float = 1.0) -> float:
        tat = self._tats.get(key)
        if tat is None:
            return 0.0
        return max(0.0, max(tat, now_s) + self.interval_s * (cost - self.burst) - now_s)

    def take(self, key: str, now_s: float, cost: float = 1.0) -> float:
        """Take ``cost`` cells for ``key``; 0.0 if allowed, else the seconds to wait."""
        new_tat, wait_s = gcra_take(self._tats.get(key, now_s), now_s, self.interval_s, self.burst, cost)
        if wait_s > 0.0:
            return wait_s
        self._tats[key] = new_tat
        self._tats.move_to_end(key)
        if len(self._tats) > self.max_keys:
            self._tats.popitem(last=False)
        return 0.0
