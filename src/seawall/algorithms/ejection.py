"""Ejection guard: never let breakers take more than a fraction of a model group out at once.

Why: breakers judge each deployment alone. When a shared cause (the gateway's own network, a bad
prompt pattern, a provider-wide blip) makes every deployment look bad, independent breakers would
eject the whole group and turn a partial failure into a total one. Envoy's ``max_ejection_percent``
and its panic threshold exist for this; so does this guard.

Rule: of ``n`` deployments, at most ``max(min_ejected, floor(max_ejected_fraction * n))`` may be
ejected (skipped). If more breakers than that are open, the *worst* ones (highest badness) are
ejected and the rest are kept: they are tried anyway, after every healthy deployment, least bad
first. Ties keep the earlier member (configuration order expresses preference).
``min_ejected`` (default 1) lets a lone deployment with an open breaker be skipped, so that its
clients fail fast instead of waiting on a dead upstream.

"Open" means the breaker would refuse an attempt now (open, or half-open with its probe slots
full). A suggested badness is ``breaker.retry_after_s(now_s)`` (longer = re-opened more often) plus
``breaker.failure_rate(now_s)``. Kept deployments are sent to without a breaker permit; their
results are not reported to the breaker, which keeps its own probing schedule.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["Ejection", "EjectionGuard", "Member"]


@dataclass(frozen=True, slots=True)
class Member:
    """One deployment of a group as the guard sees it. ``badness``: higher is worse, any scale."""

    name: str
    breaker_open: bool
    badness: float = 0.0


@dataclass(frozen=True, slots=True)
class Ejection:
    """``ejected``: skip these. ``kept_open``: open but tried anyway, after the healthy ones, in order."""

    ejected: frozenset[str]
    kept_open: tuple[str, ...]


class EjectionGuard:
    __slots__ = ("max_ejected_fraction", "min_ejected")

    def __init__(self, max_ejected_fraction: float = 0.5, min_ejected: int = 1) -> None:
        if not 0.0 <= max_ejected_fraction <= 1.0 or min_ejected < 0:
            raise ValueError("max_ejected_fraction must be in [0, 1] and min_ejected >= 0")
        self.max_ejected_fraction = max_ejected_fraction
        self.min_ejected = min_ejected

    def max_ejected(self, n_members: int) -> int:
        """How many of ``n_members`` deployments may be ejected at once."""
        cap = max(self.min_ejected, math.floor(self.max_ejected_fraction * n_members + 1e-9))
        return min(cap, n_members)

    def decide(self, members: Sequence[Member]) -> Ejection:
        open_members = [(m.badness, i, m.name) for i, m in enumerate(members) if m.breaker_open]
        if not open_members:
            return Ejection(frozenset(), ())
        open_members.sort()  # least bad first; ties: earlier member first
        n_kept = max(0, len(open_members) - self.max_ejected(len(members)))
        kept = tuple(name for _, _, name in open_members[:n_kept])
        ejected = frozenset(name for _, _, name in open_members[n_kept:])
        return Ejection(ejected, kept)
