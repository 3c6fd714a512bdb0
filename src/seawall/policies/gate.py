"""The admission gate of one model group: adaptive limit + partitioned shares + bounded queue.

It acts on pure algorithms (``algorithms/limit.py``, ``partition.py``, ``queue.py``) and adds only
what they cannot do: waiting. A request that fits starts at once. One that does not waits in a
bounded queue ordered by criticality, for at most ``max_queue_wait_s`` and never past the point
where its deadline could still be met; it is rejected *at once* when the drain rate says it could
not start in time, when the queue is full of work at least as critical, or when CoDel sees a
standing queue. Each rejection is a typed ``Overloaded`` with ``Retry-After`` derived from the
drain rate and the reason (``overload``, ``deadline``, ``queue_delay``, ``displaced``).
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from seawall.algorithms.demand import PeakDemand
from seawall.algorithms.limit import LimitAlgorithm
from seawall.algorithms.partition import PartitionedLimiter
from seawall.algorithms.queue import AdmissionQueue, CoDel, DrainRate, Waiting
from seawall.core.errors import MAX_RETRY_AFTER_S, Overloaded
from seawall.core.types import Criticality
from seawall.env import Clock

__all__ = ["AdmissionGate", "GateSettings", "Queued", "Ticket", "Waiter"]

_SATURATING = frozenset({"overload", "queue_delay", "queue_timeout", "displaced"})
MIN_RETRY_AFTER_S = 0.25
_CRITICAL = int(Criticality.CRITICAL)  # enum member lookups cost ~0.1 µs each on Python 3.11
_N_CRITICALITIES = len(Criticality)
_isfinite = math.isfinite
_PAYING = tuple(c for c in Criticality if c >= Criticality.CRITICAL)
MIN_SERVED_SHARE = 0.02  # of the drain rate, assumed left for a criticality: a long but finite wait


@dataclass(frozen=True, slots=True)
class GateSettings:
    queue_max_items: int = 1024
    queue_max_units_ratio: float = 2.0  # queued work at most this many times the current limit
    max_queue_wait_s: float = 0.5
    # Critical tiers may wait longer: an LLM answer takes seconds, so capacity held by work already
    # running frees up over a service time, and a paying request is better started late than shed.
    critical_max_queue_wait_s: float = 5.0
    codel_target_s: float = 0.05
    codel_interval_s: float = 0.5
    min_service_s: float = 0.0  # expected fastest service time, for the deadline check
    # False (default): the total in flight never exceeds the limit; a higher criticality reclaims
    # what lower ones borrowed by starting first when the next unit of work finishes (a wait at the
    # head of the queue). True: it starts at once and the total overshoots until the borrowers
    # finish (see algorithms/partition.py) — only for upstreams that queue, not refuse.
    overshoot: bool = False
    # Sheddable tiers keep free the room the critical tiers needed in the last 1-2 windows of this
    # many seconds (trunk reservation, algorithms/demand.py); 0 (default) disables it.
    protect_window_s: float = 0.0
    saturation_hold_s: float = 1.0  # see AdmissionGate.saturated
    queue_critical_reserve: float = 0.25  # share of the queue only critical work may fill (queue.py)


class Waiter(Protocol):
    """The part of ``asyncio.Future`` the gate's queue uses; the simulator has its own."""

    def done(self) -> bool: ...
    def cancel(self) -> bool: ...
    def set_result(self, ticket: Any, /) -> None: ...
    def set_exception(self, exc: BaseException, /) -> None: ...


W = TypeVar("W", bound=Waiter)


@dataclass(frozen=True, slots=True)
class Queued(Generic[W]):
    """``offer``'s answer when the request waits: its waiter, and when to call ``expire``."""

    waiter: W
    deadline_s: float


@dataclass(frozen=True, slots=True)
class Ticket:
    criticality: Criticality
    units: float
    started_s: float
    queued_s: float  # time spent waiting before it started


class AdmissionGate:
    def __init__(self, name: str, *, clock: Clock, limit: LimitAlgorithm, limiter: PartitionedLimiter,
                 settings: GateSettings | None = None) -> None:
        self.name = name
        self.clock = clock
        self.limit = limit
        self.limiter = limiter
        self.settings = s = settings or GateSettings()
        self.queue: AdmissionQueue[Waiter] = AdmissionQueue(
            s.queue_max_items, max(1.0, s.queue_max_units_ratio * limit.limit), s.queue_critical_reserve)
        self.codel = CoDel(s.codel_target_s, s.codel_interval_s)
        self.drain = DrainRate()
        self.service_s = 0.0  # smoothed time from start to release: one round trip of the work here
        self.starts = [DrainRate() for _ in Criticality]  # work units started per second, per criticality
        self.demand = PeakDemand(s.protect_window_s)
        self._protecting = s.protect_window_s > 0.0  # off by default: no demand bookkeeping at all
        self.last_full_reject_s = [-math.inf] * len(Criticality)

    # -- admission --------------------------------------------------------------------------
    def retry_after_s(self, crit: Criticality, units: float) -> float:
        now = self.clock.now()
        overshoot = self.limiter.inflight - self.limit.limit
        ahead = self.queue.units_at_or_above(crit) + units + (overshoot if overshoot > 0.0 else 0.0)
        wait = self.drain.seconds_to_drain(ahead, now)
        if not _isfinite(wait):
            wait = 1.0
        # min(MAX_RETRY_AFTER_S, max(MIN_RETRY_AFTER_S, wait)), without the two calls
        if not wait > MIN_RETRY_AFTER_S:
            return MIN_RETRY_AFTER_S
        return wait if wait < MAX_RETRY_AFTER_S else MAX_RETRY_AFTER_S

    def _reject(self, crit: Criticality, units: float, reason: str, message: str) -> Overloaded:
        if reason in _SATURATING:
            self.last_full_reject_s[crit] = self.clock.now()
        return Overloaded(message, reason=reason, retry_after_s=self.retry_after_s(crit, units))

    def saturated(self, crit: Criticality, now_s: float) -> bool:
        """Work at ``crit`` (or above) was refused for capacity within ``saturation_hold_s``.

        Then a request at ``crit`` that cannot start at once is refused at once instead of
        queueing: under sustained overload it would only wait for its timeout, and an honest
        rejection in a millisecond beats one after half a second. Critical tiers are never
        saturated: they always get their place at the head of the queue.
        """
        if crit >= _CRITICAL:
            return False
        return now_s - max(self.last_full_reject_s[crit:_CRITICAL]) < self.settings.saturation_hold_s

    def offer(self, crit: Criticality, units: float, deadline_s: float, make_waiter: Callable[[], W],
              requeued: bool = False) -> Ticket | Queued[W]:
        """The admission decision for one arrival, without waiting: the gate's event ``offer``.

        Returns a :class:`Ticket` when the request starts now (``Start``), or :class:`Queued` when it
        waits (``Wait(until)``) as ``make_waiter()``, a future-like object (``done``, ``set_result``,
        ``set_exception``, ``cancel``) that hears of its start or rejection; the driver calls
        :meth:`expire` once ``Queued.deadline_s`` has passed. Raises :class:`Overloaded` when the
        request is refused at once (``Reject``). The live gateway (:meth:`acquire`) and the
        simulator both drive it; neither decides anything of its own.

        ``requeued``: the upstream has just refused this request for capacity (a 429). It then
        waits for the next unit of work to finish here before it is sent again, however the limit
        reads, unless nothing is in flight here (no release would come to start it).
        """
        now = self.clock.now()
        limiter = self.limiter
        if self._protecting:
            self.demand.observe(crit, limiter.usage(crit) + self.queue.units_in(crit) + units, now)
        limit = self.limit.limit
        if ((not requeued or not limiter.inflight) and self.queue.units_at_or_above(crit) <= 0
                and self._try_start(crit, units, limit)):
            return Ticket(crit, units, now, 0.0)
        s = self.settings
        if self.saturated(crit, now):
            if self.queue.units_at_or_above(crit) > 0:
                self.last_full_reject_s[crit] = now  # still a line ahead: the overload goes on
            raise Overloaded("The service is at capacity; try again shortly.", reason="overload",
                             retry_after_s=self.retry_after_s(crit, units))
        wait_s = self.estimated_wait_s(crit, units, now)
        if not math.isfinite(wait_s):
            wait_s = 0.0  # nothing has drained yet: no evidence to refuse on; the wait stays bounded
        max_wait_s = s.critical_max_queue_wait_s if crit >= _CRITICAL else s.max_queue_wait_s
        if now + min(wait_s, max_wait_s) + s.min_service_s >= deadline_s:
            raise self._reject(crit, units, "deadline",
                               "The service is at capacity and this request could not start before its "
                               "deadline.")
        if wait_s > max_wait_s and len(self.queue) > 0 and not self._entitled(crit, units, limit):
            raise self._reject(crit, units, "overload", "The service is at capacity; try again shortly.")
        self.queue.max_units = max(units, s.queue_max_units_ratio * limit)
        queue_deadline = min(deadline_s - s.min_service_s, now + max_wait_s)
        waiter = make_waiter()
        pushed = self.queue.push(waiter, crit, units, queue_deadline, now)
        for victim in pushed.evicted:
            self._fail(victim, self._reject(victim.criticality, victim.units, "displaced",
                                            "Displaced by more critical work; try again shortly."))
        if not pushed.accepted:
            raise self._reject(crit, units, "overload", "The service is at capacity; try again shortly.")
        return Queued(waiter, queue_deadline)

    def expire(self, waiter: Waiter, crit: Criticality, units: float) -> Overloaded | None:
        """A waiter's queue deadline passed: None if it has started (or was answered) meanwhile,
        else it leaves the queue and this is its ``queue_timeout`` rejection."""
        if not waiter.done():
            self._dispatch()  # expires it (and anything else overdue)
        if waiter.done():
            return None
        waiter.cancel()
        return self._reject(crit, units, "queue_timeout", "The request waited for capacity until its time ran out.")

    async def acquire(self, crit: Criticality, units: float, deadline_s: float, requeued: bool = False) -> Ticket:
        """Start now, wait (bounded), or raise :class:`Overloaded` at once: :meth:`offer` on asyncio."""
        offered = self.offer(crit, units, deadline_s, asyncio.get_running_loop().create_future, requeued)
        if offered.__class__ is Ticket:
            return offered
        future: asyncio.Future[Ticket] = offered.waiter  # type: ignore[union-attr]
        queue_deadline = offered.deadline_s  # type: ignore[union-attr]
        # Wait for a start, or for the queue deadline on the injected clock (not the loop's), so the
        # gate runs the same on a fake clock in tests.
        timer = asyncio.ensure_future(_sleep_until(self.clock, queue_deadline))
        try:
            await asyncio.wait((future, timer), return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            if future.done() and not future.cancelled() and future.exception() is None:
                self.release(future.result(), rtt_s=None, dropped=False)  # started as we were cancelled
            future.cancel()
            raise
        finally:
            timer.cancel()
        rejection = self.expire(future, crit, units)
        if rejection is not None:
            raise rejection
        return future.result()

    def release(self, ticket: Ticket, *, rtt_s: float | None, dropped: bool) -> None:
        """Give back a ticket's units; feed the limit one latency sample (or a drop) and start waiters."""
        now = self.clock.now()
        inflight = self.limiter.inflight
        crit = ticket.criticality
        self.limiter.release(crit, ticket.units)
        if self._protecting:
            self.demand.observe(crit, self.limiter.usage(crit) + self.queue.units_in(crit), now)
        self.drain.on_complete(now, ticket.units)
        took_s = now - ticket.started_s
        self.service_s = took_s if self.service_s == 0.0 else self.service_s + 0.05 * (took_s - self.service_s)
        if rtt_s is not None or dropped:
            self.limit.on_sample(now, rtt_s if rtt_s is not None else 0.0, inflight, dropped, ticket.units,
                                 ticket.started_s)
        self._dispatch()

    def estimated_wait_s(self, crit: Criticality, units: float, now_s: float) -> float:
        """Seconds until an arrival at ``crit`` could start: the work queued at or above it, drained
        by the capacity that more critical work does not take first.

        Work of a higher criticality that arrives meanwhile starts ahead of it, so the rate that
        serves this queue is the drain rate less what higher criticalities start per second. At 3x
        a surge of consumer traffic, the paying tiers alone can take all of the capacity: a free
        request then cannot start however short the line, and is refused now, not after a wait.
        ``inf`` when nothing has drained yet (no evidence either way).
        """
        drain = self.drain.units_per_s(now_s)
        if drain <= 0:
            return math.inf
        starts = self.starts
        ahead = sum([starts[c].units_per_s(now_s) for c in range(int(crit) + 1, _N_CRITICALITIES)])
        return self.queue.estimated_wait_s(crit, max(drain - ahead, MIN_SERVED_SHARE * drain), units)

    def protected_units(self, crit: Criticality, now_s: float) -> float:
        """Units a request at ``crit`` must leave free: for the sheddable tiers, the recent peak
        demand of each critical tier beyond what it holds now (trunk reservation,
        algorithms/demand.py). Critical tiers leave nothing: between them the queue's order
        decides, and between sheddable tiers too (a reservation for a tier that is itself being
        shed would only hold capacity idle)."""
        if crit >= _CRITICAL or not self._protecting:
            return 0.0
        protect = 0.0
        usage = self.limiter.usage
        peak = self.demand.peak
        for paying in _PAYING:
            room = peak(paying, now_s) - usage(paying)
            if room > 0.0:
                protect += room
        return protect

    def _entitled(self, crit: Criticality, units: float, limit: float) -> bool:
        """Critical work for which the limit has room once sheddable work keeps no more than its
        own reserved shares: paying work in flight and queued, plus this request, within what the
        flood may not hold against it. Such a request waits for that capacity (held by sheddable
        work that will release it: admission never preempts) instead of being refused on a wait
        estimate, which counts every queued request ahead of it and reads capacity the flood has
        only borrowed as taken. Still bounded by its queue deadline (``queue_timeout``)."""
        if crit < _CRITICAL:
            return False
        limiter = self.limiter
        kept = 0.0  # what sheddable tiers may hold against paying work: at most their reserved shares
        for c in range(_CRITICAL):
            held = limiter.usage(Criticality(c))
            reserved = limiter.reserved(Criticality(c), limit)
            kept += held if held < reserved else reserved
        paying = units
        for c in _PAYING:
            paying += limiter.usage(c) + self.queue.units_in(c)
        return paying <= limit - kept

    def _try_start(self, crit: Criticality, units: float, limit: float) -> bool:
        limiter = self.limiter
        now = self.clock.now()
        protect = self.protected_units(crit, now)
        if not self.settings.overshoot and limiter.inflight > 0 and limiter.inflight + units + protect > limit:
            return False
        if limiter.try_acquire(crit, units, limit, protect):
            self.starts[crit].on_complete(now, units)
            return True
        return False

    # -- the queue ----------------------------------------------------------------------------
    def _fail(self, waiting: Waiting[Waiter], exc: Exception) -> None:
        if not waiting.item.done():
            waiting.item.set_exception(exc)

    def _dispatch(self) -> None:
        now = self.clock.now()
        for expired in self.queue.expire(now):
            self._fail(expired, self._reject(expired.criticality, expired.units, "queue_timeout",
                                             "The request waited for capacity until its time ran out."))
        limit = self.limit.limit
        limiter = self.limiter
        while len(self.queue):
            waiting = self.queue.pop_ready(lambda c, u: self._try_start(c, u, limit), now,
                                           lifo=self.codel.dropping)
            if waiting is None:
                break
            if waiting.item.done():  # its caller gave up while waiting
                limiter.release(waiting.criticality, waiting.units)
                continue
            sojourn = waiting.sojourn_s(now)
            # CoDel sheds a standing queue from the sheddable tiers only: critical work is dequeued
            # first, so its own wait is short; dropping it would shed the traffic that matters.
            if waiting.criticality < _CRITICAL and self.codel.on_dequeue(now, sojourn):
                limiter.release(waiting.criticality, waiting.units)
                self._fail(waiting, self._reject(waiting.criticality, waiting.units, "queue_delay",
                                                 "The service is overloaded; try again shortly."))
                continue
            waiting.item.set_result(Ticket(waiting.criticality, waiting.units, now, sojourn))
        if not len(self.queue):
            self.codel.on_empty()


    def state(self) -> dict[str, object]:
        limit = self.limit.limit
        now = self.clock.now()
        return {
            "limit_units": round(limit, 1),
            "inflight_units": round(self.limiter.inflight, 1),
            "queued": len(self.queue),
            "queued_units": round(self.queue.units, 1),
            "drain_units_per_s": round(self.drain.units_per_s(now), 1),
            "codel_dropping": self.codel.dropping,
            "by_criticality": {
                c.label: {"inflight_units": round(self.limiter.usage(c), 1),
                          "reserved_units": round(self.limiter.reserved(c, limit), 1),
                          "queued": self.queue.count(c)}
                for c in reversed(Criticality)
            },
        }


async def _sleep_until(clock: Clock, deadline_s: float) -> None:
    await clock.sleep(max(0.0, deadline_s - clock.now()))
