"""GCRA (generic cell rate algorithm): a token bucket stored as one number per key.

``rate_per_s`` cells per second with a burst of ``burst`` cells. For each key only the
theoretical arrival time (TAT) is kept, so a million keys cost a million floats. The keyed variant
is bounded: when it holds ``max_keys`` it evicts the least recently touched key, which can only
make the limiter more lenient, never wrongly strict.
"""

from __future__ import annotations

from collections import OrderedDict

__all__ = ["Gcra", "KeyedGcra"]


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
        tat = max(self.tat, now_s)
        new_tat = tat + self.interval_s * cost
        allow_at = new_tat - self.interval_s * self.burst
        if allow_at > now_s:
            return allow_at - now_s
        self.tat = new_tat
        return 0.0

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
        tat = max(self._tats.get(key, now_s), now_s)
        new_tat = tat + self.interval_s * cost
        allow_at = new_tat - self.interval_s * self.burst
        if allow_at > now_s:
            return allow_at - now_s
        self._tats[key] = new_tat
        self._tats.move_to_end(key)
        if len(self._tats) > self.max_keys:
            self._tats.popitem(last=False)
        return 0.0
