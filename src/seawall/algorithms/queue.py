"""Bounded admission queue, CoDel queue-delay control and a drain-rate estimate: the waiting room.

Why: when the limit is full, a short wait often beats a rejection — but only if the wait is
bounded, ordered by criticality, and never longer than the request's deadline. Three pieces:

- :class:`AdmissionQueue` holds opaque items with (criticality, units, deadline_s, enqueued_s),
  bounded by item count and by total work units. Highest criticality starts first, FIFO within a
  criticality. When full, an arrival displaces the newest waiting item of the lowest criticality
  below its own; an arrival with nothing lower to displace is itself rejected, at once.
- :class:`CoDel` watches how long started items waited (sojourn) and sheds a standing queue fast,
  with the RFC 8289 control law. While it is dropping, pass ``lifo=True`` to ``pop_ready``
  (adaptive LIFO, as in Facebook's "Fail at scale"): under overload the newest requests — whose
  callers are still waiting — are served first, and old ones run into their deadlines.
- :class:`DrainRate` is an EWMA of completed work units per second: it turns "units ahead of you"
  into a wait estimate (early rejection of requests whose deadline cannot be met) and Retry-After.

Times are monotonic seconds passed in by the caller; units are the limiter's work units.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from seawall.core.types import Criticality

__all__ = ["AdmissionQueue", "CoDel", "DrainRate", "PushResult", "Waiting"]

T = TypeVar("T")

_TIERS = len(Criticality)
_CRITICAL = int(Criticality.CRITICAL)  # enum member lookups cost ~0.1 µs each on Python 3.11


@dataclass(frozen=True, slots=True)
class Waiting(Generic[T]):
    """One queued item and what the queue needs to know about it."""

    item: T
    criticality: Criticality
    units: float
    deadline_s: float
    enqueued_s: float

    def sojourn_s(self, now_s: float) -> float:
        return now_s - self.enqueued_s


@dataclass(frozen=True, slots=True)
class PushResult(Generic[T]):
    """``accepted``: the arrival is queued. ``evicted``: entries it displaced (answer each one)."""

    accepted: bool
    evicted: tuple[Waiting[T], ...] = ()


_REFUSED: PushResult[Any] = PushResult(False)  # immutable: one for every refusal


class AdmissionQueue(Generic[T]):
    """Waiting requests per criticality, bounded by ``max_items`` and ``max_units``.

    ``max_units`` should be several times the limit: the queue holds work the limit will soon
    take, and a request bigger than ``max_units`` is always rejected. Expired items are never
    returned by ``pop_ready``; they stay until ``expire`` hands them back, so every queued item is
    answered exactly once (started, displaced, or expired).

    ``critical_reserve``: the share of both bounds that work below ``CRITICAL`` cannot fill (an
    arrival into an empty queue is always taken). Without it, a surge of sheddable work fills the
    queue, and each critical arrival then displaces a request that has already waited, a slow
    rejection; with it, the sheddable arrival is refused at once and the critical one finds room.
    """

    __slots__ = ("_count", "_tiers", "_units", "_units_by_tier", "critical_reserve", "max_items", "max_units")

    def __init__(self, max_items: int = 1024, max_units: float = math.inf, critical_reserve: float = 0.0) -> None:
        if max_items < 1 or not max_units > 0 or not 0.0 <= critical_reserve < 1.0:
            raise ValueError("need max_items >= 1, max_units > 0 and 0 <= critical_reserve < 1")
        self.max_items = max_items
        self.max_units = max_units
        self.critical_reserve = critical_reserve
        self._tiers: list[deque[Waiting[T]]] = [deque() for _ in range(_TIERS)]
        self._units_by_tier = [0.0] * _TIERS
        self._count = 0
        self._units = 0.0

    def __len__(self) -> int:
        return self._count

    @property
    def units(self) -> float:
        """Work units waiting, all criticalities."""
        return self._units

    def count(self, crit: Criticality) -> int:
        return len(self._tiers[crit])

    def units_in(self, crit: Criticality) -> float:
        """Work units waiting at ``crit``."""
        return self._units_by_tier[crit]

    def units_at_or_above(self, crit: Criticality) -> float:
        """Work units that would start before a new arrival at ``crit`` (FIFO within a tier)."""
        return sum(self._units_by_tier[crit:])

    def push(
        self, item: T, crit: Criticality, units: float, deadline_s: float, now_s: float
    ) -> PushResult[T]:
        """Queue ``item``, displacing lower-criticality items if the queue is full.

        Displaces the newest items of the lowest criticality first, only criticalities strictly
        below ``crit``, and only if that frees enough room; otherwise nothing is displaced and the
        arrival is rejected. An arrival whose deadline has already passed is rejected.
        """
        if units < 0:
            raise ValueError("units must be >= 0")
        if units > self.max_units or deadline_s <= now_s:
            return _REFUSED
        max_items, max_units = self.max_items, self.max_units
        if crit < _CRITICAL and self._count and self.critical_reserve:
            max_items = max(1, int(max_items * (1.0 - self.critical_reserve)))
            max_units *= 1.0 - self.critical_reserve
        over_items = self._count + 1 - max_items
        # Within float dust of the bound counts as within it (sums of units carry rounding error).
        over_units = self._units + units - max_units - 1e-9 * max(1.0, max_units)
        victims: list[Waiting[T]] = []
        for tier in range(int(crit)):
            if over_items <= 0 and over_units <= 0:
                break
            for waiting in reversed(self._tiers[tier]):
                if over_items <= 0 and over_units <= 0:
                    break
                victims.append(waiting)
                over_items -= 1
                over_units -= waiting.units
        if over_items > 0 or over_units > 0:
            return _REFUSED
        for waiting in victims:  # newest first within each tier: each is at its deque's right end
            self._tiers[waiting.criticality].pop()
            self._account(waiting, -1)
        entry = Waiting(item, crit, units, deadline_s, now_s)
        self._tiers[crit].append(entry)
        self._account(entry, +1)
        return PushResult(True, tuple(victims))

    def pop_ready(
        self, can_admit: Callable[[Criticality, float], bool], now_s: float, *, lifo: bool = False
    ) -> Waiting[T] | None:
        """Remove and return the next item to start, or None.

        Tries the head of each criticality, highest first; within a criticality the oldest
        (``lifo=False``) or the newest (``lifo=True``) unexpired item. ``can_admit(crit, units)`` is
        asked once per head tried and the first True wins, so it may acquire capacity (e.g.
        ``PartitionedLimiter.try_acquire``): it is never asked again for the item it admitted.
        A head that does not fit does not block lower criticalities, whose reserved shares the
        limiter still honours.
        """
        for tier in range(_TIERS - 1, -1, -1):
            waiting_tier = self._tiers[tier]
            order = range(len(waiting_tier) - 1, -1, -1) if lifo else range(len(waiting_tier))
            for index in order:
                waiting = waiting_tier[index]
                if waiting.deadline_s <= now_s:
                    continue
                if can_admit(waiting.criticality, waiting.units):
                    del waiting_tier[index]
                    self._account(waiting, -1)
                    return waiting
                break
        return None

    def expire(self, now_s: float) -> list[Waiting[T]]:
        """Remove and return every item whose deadline has passed (``deadline_s <= now_s``)."""
        expired: list[Waiting[T]] = []
        if not self._count:
            return expired
        for tier, waiting_tier in enumerate(self._tiers):
            for w in waiting_tier:
                if w.deadline_s <= now_s:
                    break
            else:
                continue  # empty, or nothing overdue
            kept: deque[Waiting[T]] = deque()
            for waiting in waiting_tier:
                (expired if waiting.deadline_s <= now_s else kept).append(waiting)
            self._tiers[tier] = kept
        for waiting in expired:
            self._account(waiting, -1)
        return expired

    def estimated_wait_s(
        self, crit: Criticality, drain_units_per_s: float, units: float = 0.0
    ) -> float:
        """Seconds until an arrival at ``crit`` of ``units`` could start, if the limit is full.

        The work ahead of it (every waiting item at ``crit`` or above) plus its own ``units`` must
        drain at ``drain_units_per_s`` (see :class:`DrainRate`). ``inf`` when nothing drains.
        Compare ``now_s + estimated_wait_s + expected service time`` with the deadline to reject a
        request that cannot make it at once, rather than after it has waited.
        """
        ahead = self.units_at_or_above(crit) + units
        if ahead <= 0:
            return 0.0
        return ahead / drain_units_per_s if drain_units_per_s > 0 else math.inf

    def _account(self, waiting: Waiting[T], sign: int) -> None:
        tier = int(waiting.criticality)
        self._count += sign
        if self._tiers[tier]:
            self._units_by_tier[tier] += sign * waiting.units
        else:  # reset exactly, so float error cannot accumulate across busy periods
            self._units_by_tier[tier] = 0.0
        self._units = sum(self._units_by_tier)


class CoDel:
    """CoDel (RFC 8289) on admission-queue sojourn times: shed a standing queue, keep bursts.

    A queue whose sojourn time stays at or above ``target_s`` for a whole ``interval_s`` is a
    standing queue, not a burst: CoDel then drops one item, and keeps dropping at intervals of
    ``interval_s / sqrt(count)`` — ever faster — until the sojourn falls below target. Defaults
    5 ms and 100 ms (the RFC's; ``target_s`` is typically 5-10% of ``interval_s``, and
    ``interval_s`` should be about one worst-case round trip). Call ``on_dequeue`` for each item as
    it leaves the queue; True means shed this one and ask again for the next. Call ``on_empty``
    when the queue runs dry.
    """

    __slots__ = ("_count", "_drop_next_s", "_dropping", "_first_above_s", "_last_count", "interval_s",
                 "target_s")

    def __init__(self, target_s: float = 0.005, interval_s: float = 0.1) -> None:
        if not 0 < target_s < interval_s:
            raise ValueError("need 0 < target_s < interval_s")
        self.target_s = target_s
        self.interval_s = interval_s
        self._first_above_s: float | None = None
        self._drop_next_s = 0.0
        self._count = 0
        self._last_count = 0
        self._dropping = False

    @property
    def dropping(self) -> bool:
        """True while CoDel judges the queue standing: a cue to serve LIFO and to shed."""
        return self._dropping

    @property
    def drop_count(self) -> int:
        """Drops in the current (or last) dropping episode."""
        return self._count

    def on_empty(self) -> None:
        self._first_above_s = None
        self._dropping = False

    def on_dequeue(self, now_s: float, sojourn_s: float) -> bool:
        ok_to_drop = self._ok_to_drop(now_s, sojourn_s)
        if self._dropping:
            if not ok_to_drop:
                self._dropping = False
                return False
            if now_s >= self._drop_next_s:
                self._count += 1
                self._drop_next_s = self._control_law(self._drop_next_s)
                return True
            return False
        if not ok_to_drop:
            return False
        self._dropping = True
        # Re-entering soon after the last episode resumes near its rate instead of from scratch.
        delta = self._count - self._last_count
        recent = now_s - self._drop_next_s < 16 * self.interval_s
        self._count = delta if delta > 1 and recent else 1
        self._drop_next_s = self._control_law(now_s)
        self._last_count = self._count
        return True

    def _ok_to_drop(self, now_s: float, sojourn_s: float) -> bool:
        if sojourn_s < self.target_s:
            self._first_above_s = None
            return False
        if self._first_above_s is None:
            self._first_above_s = now_s + self.interval_s
            return False
        return now_s >= self._first_above_s

    def _control_law(self, t_s: float) -> float:
        return t_s + self.interval_s / math.sqrt(self._count)


class DrainRate:
    """Completed work units per second, as an exponentially weighted moving average.

    Completions are summed over ticks of at least ``tick_s`` (default 0.1 s); each tick's rate is
    blended in with weight ``1 - exp(-tick / tau_s)`` (``tau_s`` default 2 s: about the last few
    seconds count), so irregular ticks and long silences are weighted by the time they cover. The
    first tick's rate is taken as is, rather than averaged with an invented zero.
    """

    __slots__ = ("_pending_units", "_rate", "_tick_start_s", "tau_s", "tick_s")

    def __init__(self, tau_s: float = 2.0, tick_s: float = 0.1) -> None:
        if not tau_s > 0 or not tick_s > 0:
            raise ValueError("need tau_s > 0 and tick_s > 0")
        self.tau_s = tau_s
        self.tick_s = tick_s
        self._rate: float | None = None
        self._pending_units = 0.0
        self._tick_start_s: float | None = None

    def on_complete(self, now_s: float, units: float) -> None:
        """Record ``units`` of work finished at ``now_s``."""
        start = self._tick_start_s
        if start is None:
            self._tick_start_s = now_s
        elif not now_s - start < self.tick_s:  # _fold's own test, without the call when it is a no-op
            self._fold(now_s)
        self._pending_units += units

    def units_per_s(self, now_s: float) -> float:
        """The drain rate at ``now_s``; 0.0 until a first tick has closed."""
        start = self._tick_start_s
        if start is not None and not now_s - start < self.tick_s:  # else _fold would do nothing
            self._fold(now_s)
        rate = self._rate
        return rate if rate is not None else 0.0

    def seconds_to_drain(self, units: float, now_s: float) -> float:
        """Seconds for ``units`` of work to drain at the current rate (``inf`` if nothing drains):
        the basis for Retry-After."""
        if units <= 0:
            return 0.0
        rate = self.units_per_s(now_s)
        return units / rate if rate > 0 else math.inf

    def _fold(self, now_s: float) -> None:
        start = self._tick_start_s
        if start is None:
            return
        elapsed_s = now_s - start
        if elapsed_s < self.tick_s:
            return
        sample = self._pending_units / elapsed_s
        if self._rate is None:
            self._rate = sample
        else:
            self._rate += (1.0 - math.exp(-elapsed_s / self.tau_s)) * (sample - self._rate)
        self._pending_units = 0.0
        self._tick_start_s = now_s
