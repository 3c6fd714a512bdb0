"""Choosing a deployment within a model group, and the order to fail over in.

Every strategy first narrows the group with :func:`eligible`, so the same preference rules hold
whatever the strategy:

1. **Health.** Unhealthy candidates (breaker open but kept by the ejection guard) are used only
   when no candidate is healthy. Ejected deployments should not be passed in at all.
2. **Priority.** Lower ``priority`` values are preferred: the lowest tier that has a usable
   candidate takes all the traffic (primaries before fallbacks, cheap before expensive).
3. **Headroom.** ``headroom`` is the fraction (0..1) of the deployment's upstream rate limit still
   left, from its ``x-ratelimit-remaining-*`` / ``-limit-*`` response headers (1.0 when unknown).
   Within the chosen tier, candidates below ``low_headroom`` (default 0.1, i.e. under 10% left)
   are skipped while any candidate in the tier is above it: sending there would likely earn a 429
   and a wasted attempt. Headroom never moves traffic to another priority tier; the upstream's
   429, classified as ``OVERLOADED``, does that through failover.

Strategies take their random samples ``u`` in [0, 1) as arguments and return ``None`` only for an
empty candidate list.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

__all__ = [
    "LOW_HEADROOM",
    "Candidate",
    "PeakEwma",
    "eligible",
    "failover_order",
    "least_inflight",
    "peak_ewma_p2c",
    "weighted",
]

LOW_HEADROOM = 0.1
_exp, _INF = math.exp, math.inf


class PeakEwma:
    """Peak-sensitive moving average of round-trip time (Finagle / Linkerd / tower ``PeakEwma``).

    A sample above the average replaces it at once, so a deployment that turns slow is avoided on
    the next decision; samples below decay in with time constant ``decay_s`` (default 10 s), so a
    single fast answer does not make a slow deployment look good. Without samples the estimate also
    decays towards 0, so an idle or recovered deployment is tried again instead of being starved.
    Before the first sample the estimate is ``initial_rtt_s`` (default 1 s, a typical LLM
    time-to-first-byte), decaying from the first time the estimate was consulted.
    """

    __slots__ = ("_first_asked_s", "decay_s", "estimate_s", "stamp_s")

    def __init__(self, decay_s: float = 10.0, initial_rtt_s: float = 1.0) -> None:
        if decay_s <= 0 or initial_rtt_s < 0:
            raise ValueError("decay_s must be > 0 and initial_rtt_s >= 0")
        self.decay_s = decay_s
        self.estimate_s = initial_rtt_s
        self.stamp_s: float | None = None
        self._first_asked_s: float | None = None

    def _weight(self, now_s: float) -> float:
        stamp_s = self.stamp_s
        if stamp_s is None:
            # Never sampled: the initial guess decays from the first time anyone asked, so a
            # deployment that has never answered is eventually tried rather than starved forever.
            if self._first_asked_s is None:
                self._first_asked_s = now_s
            stamp_s = self._first_asked_s
        age_s = now_s - stamp_s
        return _exp(-(age_s if age_s > 0.0 else 0.0) / self.decay_s)

    def observe(self, now_s: float, rtt_s: float) -> None:
        """Record one round trip of ``rtt_s`` seconds, finished at ``now_s``."""
        if rtt_s > self.estimate_s or self.stamp_s is None:
            self.estimate_s = rtt_s
        else:
            w = self._weight(now_s)
            self.estimate_s = self.estimate_s * w + rtt_s * (1.0 - w)
        self.stamp_s = now_s if self.stamp_s is None else max(self.stamp_s, now_s)

    def rtt_s(self, now_s: float) -> float:
        """The estimate at ``now_s``, decayed towards 0 since the last sample (does not mutate)."""
        return self.estimate_s * self._weight(now_s)

    def cost(self, now_s: float, inflight: float) -> float:
        """Expected wait if sent here now: ``rtt_s(now_s) * (inflight + 1)``."""
        return self.estimate_s * self._weight(now_s) * (inflight + 1.0)


@dataclass(frozen=True, slots=True)
class Candidate:
    """A deployment as the balancer sees it at one decision.

    ``weight`` (>= 0) is its relative share for :func:`weighted`; ``priority`` its tier (lower is
    preferred); ``inflight_units`` the work in flight there (requests or estimated tokens; use one
    unit throughout a group); ``ewma`` its latency tracker (pass the deployment's long-lived
    object); ``healthy`` False when its breaker is open but it was kept; ``headroom`` 0..1.
    """

    name: str
    weight: float = 1.0
    priority: int = 0
    inflight_units: float = 0.0
    ewma: PeakEwma = field(default_factory=PeakEwma)
    healthy: bool = True
    headroom: float = 1.0


def eligible(cands: Sequence[Candidate], *, low_headroom: float = LOW_HEADROOM) -> list[Candidate]:
    """The candidates a strategy may choose from, by health, then priority, then headroom."""
    if not cands:
        return []
    pool = [c for c in cands if c.healthy] or list(cands)
    top = min([c.priority for c in pool])
    tier = [c for c in pool if c.priority == top]
    return [c for c in tier if c.headroom >= low_headroom] or tier


def _index(u: float, n: int) -> int:
    return min(int(u * n), n - 1) if u > 0 else 0


def weighted(cands: Sequence[Candidate], u: float, *, low_headroom: float = LOW_HEADROOM) -> Candidate | None:
    """Pick with probability proportional to ``weight`` (uniformly if all weights are 0)."""
    pool = eligible(cands, low_headroom=low_headroom)
    if not pool:
        return None
    total = sum(max(0.0, c.weight) for c in pool)
    if total <= 0:
        return pool[_index(u, len(pool))]
    point = u * total
    acc = 0.0
    for c in pool:
        w = max(0.0, c.weight)
        acc += w
        if point < acc:
            return c
    return next(c for c in reversed(pool) if c.weight > 0)  # float rounding at u -> 1


def _load(c: Candidate) -> float:
    return c.inflight_units / c.weight if c.weight > 0 else math.inf


def least_inflight(
    cands: Sequence[Candidate], u: float, *, low_headroom: float = LOW_HEADROOM
) -> Candidate | None:
    """Pick the least loaded: lowest ``inflight_units / weight``; ties are broken by ``u``.

    With equal weights this is plain least-inflight; with weights it is Envoy's weighted least
    request, so a deployment with twice the weight is expected to carry twice the work.
    """
    pool = eligible(cands, low_headroom=low_headroom)
    if not pool:
        return None
    best = min(_load(c) for c in pool)
    ties = [c for c in pool if _load(c) == best]
    return ties[_index(u, len(ties))]


def peak_ewma_p2c(
    cands: Sequence[Candidate], u1: float, u2: float, now_s: float, *, low_headroom: float = LOW_HEADROOM
) -> Candidate | None:
    """Power of two choices on peak-EWMA cost: sample two distinct candidates, take the cheaper.

    Cost is ``ewma.cost(now_s, inflight_units)``. Two random choices avoid the herd that "always the
    cheapest" causes when every gateway replica sees the same stale costs, while still steering
    away from slow or busy deployments. Ties go to the first sample.
    """
    pool = eligible(cands, low_headroom=low_headroom)
    n = len(pool)
    if n == 0:
        return None
    if n == 1:
        return pool[0]
    i = _index(u1, n)
    j = _index(u2, n - 1)
    if j >= i:
        j += 1
    a, b = pool[i], pool[j]
    return b if b.ewma.cost(now_s, b.inflight_units) < a.ewma.cost(now_s, a.inflight_units) else a


def failover_order(
    cands: Sequence[Candidate], first: Candidate | None, *, low_headroom: float = LOW_HEADROOM
) -> list[Candidate]:
    """The order to try the rest of the group in after ``first`` (which is left out).

    Healthy before unhealthy, then lower priority first, then enough headroom before low headroom,
    then least loaded (``inflight_units / weight``); remaining ties keep the input order, so pass
    unhealthy candidates least bad first (as :class:`~seawall.algorithms.ejection.Ejection` lists
    them).
    """
    skip = first.name if first is not None else None
    rest = [c for c in cands if c.name != skip]
    rest.sort(key=lambda c: (not c.healthy, c.priority, c.headroom < low_headroom,
                             c.inflight_units / c.weight if c.weight > 0 else _INF))  # _load, inlined
    return rest
