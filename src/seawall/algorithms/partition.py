"""Partitioned limiter: shares of one adaptive limit, reserved per criticality, lendable when idle.

Why: a single limit sheds whatever arrives last, so in a surge of free-tier traffic the paying
traffic is shed as often as anything else. Here each criticality has a reserved share of the
current limit (work units, the same units as the limit), idle shares may be borrowed, and under
overload the lowest criticality is shed first.

Admission of ``units`` at criticality ``c`` against ``limit`` (checked in this order):

1. *Idle*: nothing is in flight — always admit, so a request larger than the whole limit (a huge
   prompt) cannot starve forever.
2. *Own reserve*: ``usage(c) + units <= reserved(c)`` — admit, even if other tiers borrowed that
   reserve (the total then overshoots the limit until the borrowers finish).
3. *Fit, lower tiers' borrowing counted as free*: admit if ::

       usage(>= c) + sum over l < c of min(usage(l), reserved(l)) + need <= limit

   i.e. whatever lower tiers hold *beyond* their reserved share is lent to ``c``: it is
   reclaimed for ``c`` at once and drains as those requests finish. ``need`` is ``units`` capped at
   ``limit - sum(reserved(l) for l < c)``, the most ``c`` can ever hold while lower tiers sit at
   their reserves, so an oversized request is admitted once ``c`` and higher tiers are idle
   rather than never.

Invariant (the issue's "a critical request is never rejected for capacity while lower-criticality
work holds capacity beyond its reserved share"), stated precisely: a rejected request would not
fit even if every lower tier gave back everything above its reserved share — lower tiers'
borrowing never counts against a higher tier. It cannot mean "admit whenever a lower tier holds
any excess": while one sheddable request above its share is still running, a critical surge would
then be admitted without bound — the upstream collapse this limiter exists to prevent. Lower
tiers' excess is lent once, not once per request.

Overshoot bound: rules 2 and 3 never take the total in flight above ::

    limit + sum over all tiers of max(0, usage(t) - reserved(t)) + max(0, units - need)

measured just before the admission (rule 1 admits onto an empty limiter, so the total is just that
request). The total exceeds the limit only by capacity that borrowers will hand back: while it is
at or above the limit no tier gains a new loan except by reclaiming a lower tier's, so the overshoot
drains within one service time of the borrowed work. Worst case, when tiers surge one after the
other in ascending order and each reclaims what the one below borrowed, every tier can hold up to
the limit at once: the static bound is ``len(Criticality) * limit`` (plus one oversized request
per tier).
"""

from __future__ import annotations

from collections.abc import Mapping

from seawall.core.types import Criticality

__all__ = ["PartitionedLimiter"]

_EPS = 1e-9
_TIERS = len(Criticality)


class PartitionedLimiter:
    """Usage per criticality against a limit passed in on each call (it moves: see ``limit.py``).

    ``shares`` maps criticality to its reserved fraction of the limit, each in [0, 1], summing to at
    most 1; a missing criticality reserves nothing. One instance per model group or deployment;
    every ``try_acquire`` that returns True must be paired with one ``release`` of the same units.
    """

    __slots__ = ("_holders", "_shares", "_usage")

    def __init__(self, shares: Mapping[Criticality, float]) -> None:
        values = [float(shares.get(c, 0.0)) for c in Criticality]
        if any(not 0.0 <= v <= 1.0 for v in values) or sum(values) > 1.0 + _EPS:
            raise ValueError("each share must be in [0, 1] and the shares must sum to <= 1")
        self._shares = tuple(values)
        self._usage = [0.0] * _TIERS
        self._holders = [0] * _TIERS  # acquisitions not yet released, per criticality

    @property
    def inflight(self) -> float:
        """Work units admitted and not yet released, all criticalities together."""
        return sum(self._usage)

    def usage(self, crit: Criticality) -> float:
        """Work units in flight at ``crit``."""
        return self._usage[crit]

    def share(self, crit: Criticality) -> float:
        return self._shares[crit]

    def reserved(self, crit: Criticality, limit: float) -> float:
        """Units of ``limit`` reserved for ``crit``: always available to it."""
        return self._shares[crit] * limit

    def borrowed(self, crit: Criticality, limit: float) -> float:
        """Units ``crit`` holds beyond its reserved share: lent to any higher criticality."""
        return max(0.0, self._usage[crit] - self._shares[crit] * limit)

    def need(self, crit: Criticality, units: float, limit: float) -> float:
        """Units the fit test charges for a request: ``units`` capped at what ``crit`` can ever hold."""
        ceiling = limit * (1.0 - sum(self._shares[:crit]))
        return min(units, ceiling) if ceiling > _EPS else units

    def would_admit(self, crit: Criticality, units: float, limit: float, protect: float = 0.0) -> bool:
        """The admission decision without taking anything (see the module docstring).

        ``protect``: units of the limit to keep free for more critical tiers (their recent demand
        beyond what they hold now, :mod:`seawall.algorithms.demand`); the fit test (rule 3) counts
        them as held. Rules 1 and 2 ignore it: a tier's own reserved share is always its own."""
        if units < 0:
            raise ValueError("units must be >= 0")
        usage = self._usage
        c = int(crit)
        if not any(usage):
            return True
        if usage[c] + units <= self._shares[c] * limit + _EPS:
            return True
        held = sum(usage[c:]) + sum(min(usage[i], self._shares[i] * limit) for i in range(c))
        return held + protect + self.need(crit, units, limit) <= limit + _EPS

    def try_acquire(self, crit: Criticality, units: float, limit: float, protect: float = 0.0) -> bool:
        """Admit ``units`` at ``crit`` under ``limit`` and count them, or return False."""
        if not self.would_admit(crit, units, limit, protect):
            return False
        self._usage[crit] += units
        self._holders[crit] += 1
        return True

    def release(self, crit: Criticality, units: float) -> None:
        """Give back units from an earlier successful ``try_acquire``."""
        held = self._usage[crit]
        left = held - units
        slack = _EPS * max(1.0, held, units)
        if units < 0 or self._holders[crit] <= 0 or left < -slack:
            raise ValueError(f"release of {units} units at {crit.label} exceeds what it holds")
        self._holders[crit] -= 1
        # The last holder out leaves exactly zero, so float dust cannot block "idle"; until then
        # every holding counts, however small (clearing "dust" early would lose a real one).
        self._usage[crit] = max(0.0, left) if self._holders[crit] else 0.0
