"""Pacing from rate-limit headers: send to a hosted provider only what its budget still allows.

Why: a hosted provider (OpenAI, Anthropic) states its per-key budget on every answer (limit,
remaining, time until full again, per requests and per tokens) and refuses with a 429 once it is
spent. Sending into an empty budget burns an attempt, earns a cooldown and tells the adaptive limit
"too much" a round trip late. The headers say it before the 429: a :class:`Pacer` per deployment
keeps the budget the last header stated, takes off what this gateway has sent since, adds back what
refills meanwhile, and says when a request of a given size fits again (:meth:`Pacer.ready_at`).

The headers of both dialects become one :class:`RateLimitReport` in
:func:`seawall.providers.ratelimits.parse_rate_limits` (a wire format, so in ``providers/``).

The model of a budget (one per dimension): a bucket of ``limit`` header units that refills linearly
until full at ``reset``, so at ``rate = (limit - remaining) / reset`` units a second. A header whose
reset is 0 while something is spent states no refill (a concurrency count, as fixed-slot servers
send): it is not a rate budget and never paces.

What a request costs in header units is learned, not assumed. Providers may enforce a minute's
budget over shorter periods ("60,000 requests/minute may be enforced as 1,000 requests/second"),
and then ``remaining`` falls faster than one unit a request. A 429 that came with headers says how
much the provider wanted: ``remaining + rate * retry_after``; over this gateway's own charge for the
request (1 request, its estimated tokens) that is the dimension's ``scale``. The evidence fades
(``scale_half_life_s``), so a provider that stops quantizing is used fully again, at the price of a
429 now and then while it still does.

Shared keys. Several gateway replicas spend one key, and each sees the same headers; if each spent
all that ``remaining`` shows, together they would overspend it by their number. Each pacer
therefore estimates its *share* of what the key consumes (what it charged over what the headers say
was consumed, both smoothed over ``share_window_s``) and spends only that share of the remaining
budget: N replicas with equal traffic each wait for N requests' worth, then each sends one.

Pure: time is an argument (monotonic ``now_s``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["Budget", "Pacer", "RateLimitReport"]


@dataclass(frozen=True, slots=True)
class Budget:
    """One dimension of a provider's budget as one answer stated it: ``limit`` and ``remaining`` in
    the header's units (requests or tokens), ``reset_s`` seconds until it is full again (``None``:
    not stated)."""

    dimension: str
    limit: float
    remaining: float
    reset_s: float | None


@dataclass(frozen=True, slots=True)
class RateLimitReport:
    """What one answer's rate-limit headers said; ``retry_after_s`` from a 429's ``retry-after``."""

    budgets: tuple[Budget, ...]
    retry_after_s: float | None = None


class _Dimension:
    """One budget as this pacer tracks it (module docstring)."""

    __slots__ = ("consumed_rate", "limit", "own_rate", "rate", "remaining", "scale", "scale_s", "spent", "stamp_s")

    def __init__(self) -> None:
        self.limit = 0.0
        self.remaining = 0.0  # as of stamp_s, header units
        self.stamp_s = -math.inf
        self.rate = 0.0  # refill, header units per second (0: not a rate budget)
        self.spent = 0.0  # own charges since stamp_s, header units
        self.scale = 1.0  # header units per unit of own charge, learned from 429s
        self.scale_s = -math.inf
        self.own_rate = 0.0  # own charges per second, smoothed (header units)
        self.consumed_rate = 0.0  # the key's consumption per second by the headers, smoothed

    def available(self, now_s: float) -> float:
        refilled = self.remaining + self.rate * max(0.0, now_s - self.stamp_s)
        return (refilled if refilled < self.limit else self.limit) - self.spent


class Pacer:
    """One deployment's view of its provider budget (module docstring).

    Feed it every answer's :class:`RateLimitReport` (:meth:`observe`, ``refused=True`` for a 429) and
    every send (:meth:`on_send`); ask :meth:`ready_at` before a send. ``units``: the gateway's
    estimate of a request's tokens (prompt plus ``max_tokens``), which is what providers charge.

    ``stale_s`` (default 60): a budget not restated for this long is forgotten (the deployment went
    quiet; its next answer states it afresh). ``share_window_s`` (default 10): the smoothing of the
    shared-key share. ``scale_half_life_s`` (default 600): how long a 429's lesson about the cost of
    a request lasts (half of the excess over 1 is forgotten per half-life). ``min_share`` (default
    0.1): the least share a replica assumes, so that one that sent little lately is not starved
    by a share measured while it was idle (it waits for at most ten requests' worth).
    """

    __slots__ = ("_dims", "_hold_until_s", "_last_units", "min_share", "scale_half_life_s", "share_window_s",
                 "stale_s")

    def __init__(self, *, stale_s: float = 60.0, share_window_s: float = 10.0,
                 scale_half_life_s: float = 600.0, min_share: float = 0.1) -> None:
        if stale_s <= 0 or share_window_s <= 0 or scale_half_life_s <= 0 or not 0.0 < min_share <= 1.0:
            raise ValueError("stale_s, share_window_s, scale_half_life_s > 0 and min_share in (0, 1]")
        self.min_share = min_share
        self.stale_s = stale_s
        self.share_window_s = share_window_s
        self.scale_half_life_s = scale_half_life_s
        self._dims: dict[str, _Dimension] = {}
        self._hold_until_s = -math.inf  # a retry-after not yet over
        self._last_units = 0.0  # the last request's size: what "exhausted" is judged against

    # -- what the provider says -----------------------------------------------------------------

    def observe(self, now_s: float, report: RateLimitReport, *, refused: bool = False, units: float = 0.0) -> None:
        """One answer's headers. ``refused``: it was a 429 for a request of ``units`` tokens; its
        retry hint holds every send until it has passed, and its headers teach what a request costs.

        The hold is for a budget: a 429 that states only concurrency counts (remaining slots, no
        refill) frees as soon as any request there ends, so its retry hint is a guess, and the
        deployment's cooldown already steers traffic elsewhere meanwhile."""
        scarcest: tuple[float, _Dimension, Budget] | None = None
        for b in report.budgets:
            dim = self._dims.get(b.dimension)
            if dim is None:
                dim = self._dims[b.dimension] = _Dimension()
            self._restate(dim, b, now_s)
            if dim.rate > 0.0 and b.limit > 0.0:
                fraction = b.remaining / b.limit
                if scarcest is None or fraction < scarcest[0]:
                    scarcest = (fraction, dim, b)
        if refused and report.retry_after_s is not None and (scarcest is not None or not report.budgets):
            self._hold_until_s = max(self._hold_until_s, now_s + report.retry_after_s)
        if refused and scarcest is not None and report.retry_after_s is not None:
            _, dim, b = scarcest
            wanted = b.remaining + dim.rate * report.retry_after_s  # header units the provider wanted
            charge = 1.0 if b.dimension == "requests" else units
            if charge > 0.0 and wanted > charge:
                dim.scale = max(self._scale(dim, now_s), wanted / charge)
                dim.scale_s = now_s

    def _restate(self, dim: _Dimension, b: Budget, now_s: float) -> None:
        reset_s = b.reset_s
        if reset_s is not None and reset_s > 0.0 and b.remaining < b.limit:
            rate = (b.limit - b.remaining) / reset_s
        elif b.remaining >= b.limit and dim.rate > 0.0:
            rate = dim.rate  # full: the refill is not stated; keep what was
        else:
            rate = 0.0  # nothing refills on a clock: not a rate budget (a concurrency count)
        if dim.stamp_s > -math.inf and now_s > dim.stamp_s and rate > 0.0:
            # What the whole key consumed since the last statement, against what this pacer charged.
            dt = now_s - dim.stamp_s
            before = min(dim.limit, dim.remaining + rate * dt)
            consumed = max(0.0, before - b.remaining)
            w = min(1.0, dt / self.share_window_s)
            dim.consumed_rate += w * (consumed / dt - dim.consumed_rate)
            dim.own_rate += w * (dim.spent / dt - dim.own_rate)
        dim.limit = b.limit
        dim.remaining = b.remaining
        dim.rate = rate
        dim.stamp_s = now_s
        dim.spent = 0.0

    def _scale(self, dim: _Dimension, now_s: float) -> float:
        if dim.scale <= 1.0:
            return 1.0
        return 1.0 + (dim.scale - 1.0) * 0.5 ** (max(0.0, now_s - dim.scale_s) / self.scale_half_life_s)

    def _share(self, dim: _Dimension) -> float:
        """This gateway's share of what the key consumes, in [min_share, 1]; 1 until measured."""
        if dim.consumed_rate <= 0.0 or dim.own_rate <= 0.0:
            return 1.0
        share = dim.own_rate / dim.consumed_rate
        return min(1.0, max(self.min_share, share))

    # -- what this gateway does -----------------------------------------------------------------

    def on_send(self, now_s: float, units: float) -> None:
        """A request of ``units`` tokens was sent: charge it against every budget."""
        self._last_units = units
        for name, dim in self._dims.items():
            charge = 1.0 if name == "requests" else units
            dim.spent += charge * self._scale(dim, now_s)

    def ready_at(self, now_s: float, units: float) -> float:
        """When a request of ``units`` tokens fits the budget: ``now_s`` if it does now, ``inf`` never
        (it could not fit even a full budget: the provider will say so, so it is not held)."""
        at = self._hold_until_s if self._hold_until_s > now_s else now_s
        for name, dim in self._dims.items():
            if dim.rate <= 0.0 or now_s - dim.stamp_s > self.stale_s:
                continue
            cost = (1.0 if name == "requests" else units) * self._scale(dim, now_s)
            if cost > dim.limit:
                continue
            share = self._share(dim)
            short = cost - share * dim.available(at)
            if short > 0.0:
                at += short / (share * dim.rate)
        return at

    def exhausted(self, now_s: float) -> bool:
        """No budget left for a request like the last one: the balancer prefers other deployments."""
        return self.ready_at(now_s, self._last_units) > now_s

    def states_budget(self, now_s: float) -> bool:
        """A rate budget was stated within ``stale_s``: this upstream says itself how much it takes."""
        return any(dim.rate > 0.0 and now_s - dim.stamp_s <= self.stale_s for dim in self._dims.values())
