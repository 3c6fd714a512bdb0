"""The traffic of a scenario: arrival times and request shapes, from one seed, for both modes.

Each tier draws from its own seeded generator, so the live replay and the simulator — and the two
configurations of a side-by-side run — see exactly the same requests at the same instants
(common random numbers: differences between runs come from the gateway, not from the dice).

Arrivals are a non-homogeneous Poisson process sampled by thinning (Lewis & Shedler): candidates
at the slice's peak rate, each kept with probability ``rate(t) / peak``. Phases are cut into
slices of at most ``_SLICE_S`` so the peak is tight and few candidates are wasted. Token counts
are drawn from 1024-point quantile tables (one index per draw, no transcendental functions on the
hot path).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Any

from seawall.surge.scenario import ClientBehaviour, Dist, RateConstant, Scenario

__all__ = ["REQUEST_OVERHEAD_TOKENS", "Arrivals", "FloodArrivals", "Shape", "TierSource", "tier_sources"]

_TABLE = 1024  # TierSource.draw spells it out
_SLICE_S = 5.0
_MAX_SLICES = 512
# The gateway estimates a prompt as len(body) // 4 (providers/openai.estimate_tokens). The live
# generator pads each body to exactly 4 * prompt_tokens bytes, so the simulator and the gateway
# count the same units; a body cannot be shorter than its JSON frame, about this many tokens.
REQUEST_OVERHEAD_TOKENS = 40


def _table(dist: Dist, low: int) -> list[int]:
    return [max(low, round(dist.quantile((i + 0.5) / _TABLE))) for i in range(_TABLE)]


@dataclass(frozen=True, slots=True)
class Shape:
    """One request: the numbers both modes need. ``max_tokens`` None: the body sends none."""

    prompt_tokens: int
    max_tokens: int | None
    completion_tokens: int
    stream: bool
    model: str

    @property
    def units(self) -> float:
        """The gateway's work units for it (policies.route.work_units)."""
        return float(self.prompt_tokens + (self.max_tokens or 256))


class Arrivals:
    """Arrival instants of one tier over the whole scenario (seconds from its start)."""

    __slots__ = ("_i", "_random", "_slices", "_t")

    def __init__(self, scenario: Scenario, tier: str, rng: random.Random) -> None:
        self._random = rng.random
        # (start_s, end_s, peak_per_s, rate function, phase start, phase duration, constant rate or
        # None) for every slice of every phase; a constant rate is compared without a call.
        self._slices: list[tuple[float, float, float, Any, float, float, float | None]] = []
        for phase, start in zip(scenario.phases, scenario.phase_starts(), strict=True):
            rate = phase.rates.get(tier)
            if rate is None:
                continue
            constant = rate.per_s if isinstance(rate, RateConstant) else None
            n = min(_MAX_SLICES, max(1, math.ceil(phase.duration_s / _SLICE_S)))
            width = phase.duration_s / n
            for i in range(n):
                a, b = i * width, (i + 1) * width
                peak = rate.peak(a, b, phase.duration_s) * 1.000001
                if peak > 0:
                    self._slices.append((start + a, start + b, peak, rate, start, phase.duration_s, constant))
        self._i = 0
        self._t = self._slices[0][0] if self._slices else math.inf

    def next(self) -> float:
        """The next arrival instant, ``inf`` when the tier has no more."""
        rnd = self._random
        log = math.log
        slices = self._slices
        while self._i < len(slices):
            start, end, peak, rate, phase_start, duration, constant = slices[self._i]
            t = self._t
            if start > t:
                t = start
            while True:
                t -= log(1.0 - rnd()) / peak
                if t >= end:
                    break
                if rnd() * peak <= (constant if constant is not None else rate.at(t - phase_start, duration)):
                    self._t = t
                    return t
            self._i += 1
            self._t = end
        return math.inf


class FloodArrivals:
    """Invalid-key floods: one stream of (instant, client address index, flood index)."""

    __slots__ = ("_floods", "_heads", "_random", "keys")

    def __init__(self, scenario: Scenario, rng: random.Random) -> None:
        self._random = rng.random
        self._floods = [(e.at_s, e.at_s + e.duration_s, e.per_s, e.addresses)
                        for e in scenario.events if e.kind == "invalid_key_flood"]
        self._heads = [start for start, _, _, _ in self._floods]
        #: the client address of each address index (what the auth throttle keys on)
        self.keys = [f"10.0.{a // 250}.{a % 250 + 1}" for a in range(max((f[3] for f in self._floods), default=0))]

    def next(self) -> tuple[float, int] | None:
        """The next flood request as (instant, address index), or None when every flood is over."""
        heads = self._heads
        floods = self._floods
        while True:
            best = -1
            for i, t in enumerate(heads):
                if t < floods[i][1] and (best < 0 or t < heads[best]):
                    best = i
            if best < 0:
                return None
            _, end, per_s, addresses = floods[best]
            t = heads[best] - math.log(1.0 - self._random()) / per_s
            heads[best] = t
            if t < end:
                return t, int(self._random() * addresses)


class TierSource:
    """Everything about one tier's clients: arrivals, shapes, behaviour."""

    __slots__ = ("_choice", "_completion", "_max", "_models", "_prompt", "_random", "_stream", "arrivals",
                 "client", "index", "tier")

    def __init__(self, scenario: Scenario, tier: str, index: int, seed: int) -> None:
        self.tier = tier
        self.index = index
        rng = random.Random(seed * 7919 + index * 104_729 + 17)
        self._random = rng.random
        self.arrivals = Arrivals(scenario, tier, random.Random(rng.random()))
        shape = scenario.shape_of(tier)
        self.client: ClientBehaviour = scenario.client_of(tier)
        self._prompt = _table(shape.prompt_tokens, REQUEST_OVERHEAD_TOKENS)
        self._max = _table(shape.max_tokens, 1) if shape.max_tokens is not None else None
        self._completion = _table(shape.completion_tokens, 1)
        self._stream = shape.stream_fraction
        total = sum(shape.models.values())
        acc = 0.0
        self._models: list[tuple[float, str]] = []
        for name, share in shape.models.items():
            acc += share / total
            self._models.append((acc, name))
        self._choice = len(self._models) > 1

    def draw(self) -> tuple[int, int | None, int, bool, str]:
        """The next request's (prompt_tokens, max_tokens, completion_tokens, stream, model)."""
        rnd = self._random
        prompt = self._prompt[int(rnd() * 1024)]  # _TABLE
        max_tokens = self._max[int(rnd() * 1024)] if self._max is not None else None
        completion = self._completion[int(rnd() * 1024)]
        stream = rnd() < self._stream
        if self._choice:
            u = rnd()
            return prompt, max_tokens, completion, stream, next(
                (name for acc, name in self._models if u < acc), self._models[-1][1])
        return prompt, max_tokens, completion, stream, self._models[0][1]

    def shape(self) -> Shape:
        return Shape(*self.draw())


def tier_sources(scenario: Scenario, seed: int | None = None) -> list[TierSource]:
    """One source per tier, in the scenario's order."""
    seed = scenario.seed if seed is None else seed
    return [TierSource(scenario, tier, i, seed) for i, tier in enumerate(scenario.tiers)]
