"""Capacity planning: the smallest upstream capacity (or replica count) that meets the SLOs.

Bisection with the simulator. Meeting the SLOs is assumed monotone in capacity (more capacity
never hurts); the search first finds a passing upper bound (doubling from ``hi``), then halves the
interval until it is within ``tolerance`` (relative, for capacity) or exact (replicas). Every
candidate is simulated with the same seed, so the answer is reproducible.

SLOs come from the scenario, or from ``--slo`` specs: ``critical=99.9`` (success rate in percent)
or ``api.p99=20`` (p99 latency in seconds), keyed by tier name or by criticality label (which
then applies to every tier of that criticality).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from seawall.core.types import Criticality
from seawall.surge.profiles import gateway_config
from seawall.surge.scenario import Scenario, Slo
from seawall.surge.sim import SimResult, simulate

__all__ = ["PlanResult", "parse_slos", "plan_capacity"]


def parse_slos(scenario: Scenario, specs: Sequence[str], profile: str = "seawall") -> dict[str, Slo]:
    """``["critical=99.9", "api.p99=20"]`` -> SLOs per scenario tier (``ValueError`` names the bad one)."""
    if not specs:
        return dict(scenario.slo)
    config = gateway_config(scenario, profile)
    crit_of = {t: config.criticality_of(t) for t in scenario.tiers}
    out: dict[str, dict[str, float]] = {}
    for spec in specs:
        key, sep, raw = spec.partition("=")
        if not sep:
            raise ValueError(f"--slo {spec!r}: expected NAME=PERCENT or NAME.p99=SECONDS")
        name, _, metric = key.strip().partition(".")
        try:
            value = float(raw)
        except ValueError:
            raise ValueError(f"--slo {spec!r}: {raw!r} is not a number") from None
        if name in scenario.tiers:
            tiers = [name]
        else:
            try:
                crit = Criticality.parse(name)
            except KeyError:
                raise ValueError(f"--slo {spec!r}: '{name}' is neither a tier of the scenario "
                                 f"({', '.join(scenario.tiers)}) nor a criticality") from None
            tiers = [t for t, c in crit_of.items() if c is crit]
            if not tiers:
                raise ValueError(f"--slo {spec!r}: no tier of the scenario has criticality {name}")
        if metric in ("", "success", "success_rate_pct"):
            if not 0 <= value <= 100:
                raise ValueError(f"--slo {spec!r}: a success rate is a percentage (0-100)")
            field_name = "success_rate_pct"
        elif metric == "p99":
            if value <= 0:
                raise ValueError(f"--slo {spec!r}: a latency must be > 0")
            field_name = "p99_latency_s"
        else:
            raise ValueError(f"--slo {spec!r}: unknown metric '{metric}' (success or p99)")
        for tier in tiers:
            out.setdefault(tier, {})[field_name] = value
    return {tier: Slo(**values) for tier, values in out.items()}


def _with_capacity(scenario: Scenario, factor: float, slos: dict[str, Slo]) -> Scenario:
    data = scenario.model_dump(mode="python")
    for model in data["upstream"]["models"]:
        for dep in model["deployments"]:
            dep["max_in_flight"] = max(1, round(dep["max_in_flight"] * factor))
    for event in data["events"]:
        if event["kind"] == "capacity_added":
            event["max_in_flight"] = max(1, round(event["max_in_flight"] * factor))
    data["slo"] = {k: v.model_dump() for k, v in slos.items()}
    return Scenario.model_validate(data)


def _meets(result: SimResult, slos: dict[str, Slo]) -> tuple[bool, dict[str, Any]]:
    seen: dict[str, Any] = {}
    ok = True
    for i, tier in enumerate(result.tiers):
        slo = slos.get(tier)
        if slo is None:
            continue
        s = result.recorder.summary(i)
        seen[tier] = {"success_rate_pct": s["success_rate_pct"], "p99_s": s["p99_s"]}
        if slo.success_rate_pct is not None and (s["success_rate_pct"] is None
                                                 or s["success_rate_pct"] < slo.success_rate_pct):
            ok = False
        if slo.p99_latency_s is not None and (s["p99_s"] is None or s["p99_s"] > slo.p99_latency_s):
            ok = False
    return ok, seen


@dataclass
class PlanResult:
    vary: str
    answer: float | None  # capacity factor, or replicas; None: not met within the bounds
    total_capacity: int | None
    trials: list[dict[str, Any]] = field(default_factory=list)
    slos: dict[str, Any] = field(default_factory=dict)


def plan_capacity(scenario: Scenario, slos: dict[str, Slo], *, profile: str = "seawall", vary: str = "capacity",
                  replicas: int | None = None, seed: int | None = None, lo: float | None = None,
                  hi: float | None = None, tolerance: float = 0.02, max_trials: int = 24,
                  on_trial: Callable[[dict[str, Any]], None] | None = None) -> PlanResult:
    """Bisect ``vary`` ("capacity": a factor on every deployment's ``max_in_flight``; "replicas")."""
    if not slos:
        raise ValueError("no SLOs to plan for: give --slo or declare slo in the scenario")
    if vary not in ("capacity", "replicas"):
        raise ValueError("vary must be 'capacity' or 'replicas'")
    trials: list[dict[str, Any]] = []
    base_capacity = sum(d.max_in_flight for _, d in scenario.deployments())

    def trial(x: float) -> bool:
        if vary == "capacity":
            sc = _with_capacity(scenario, x, slos)
            result = simulate(sc, profile, replicas=replicas, seed=seed)
            capacity = sum(d.max_in_flight for _, d in sc.deployments())
        else:
            sc = _with_capacity(scenario, 1.0, slos)
            result = simulate(sc, profile, replicas=int(x), seed=seed)
            capacity = base_capacity
        ok, seen = _meets(result, slos)
        record = {"value": x, "total_capacity": capacity, "replicas": result.replicas, "meets": ok, "tiers": seen,
                  "wall_s": round(result.wall_s, 2)}
        trials.append(record)
        if on_trial is not None:
            on_trial(record)
        return ok

    if vary == "capacity":
        low, high = (lo if lo is not None else 0.05), (hi if hi is not None else 1.0)
    else:
        low, high = (lo if lo is not None else 1.0), (hi if hi is not None else float(scenario.gateway.replicas))
    ceiling = 64.0 * high  # a capacity 64x the first guess that still misses: the SLO is out of reach
    while not trial(high):
        if len(trials) >= max_trials or high * 2.0 > ceiling or (vary == "replicas" and high >= 10_000):
            return PlanResult(vary, None, None, trials, {k: v.model_dump() for k, v in slos.items()})
        low, high = high, high * 2.0
    if trials[-1]["value"] == high and len(trials) == 1 and trial(low):
        high = low  # already met at the lower bound
    else:
        while len(trials) < max_trials:
            if vary == "replicas":
                if high - low <= 1:
                    break
                mid = float((int(low) + int(high)) // 2)
            else:
                if (high - low) / high <= tolerance:
                    break
                mid = (low + high) / 2.0
            if trial(mid):
                high = mid
            else:
                low = mid
    answer = high
    total = (sum(max(1, round(d.max_in_flight * answer)) for _, d in scenario.deployments())
             if vary == "capacity" else base_capacity)
    return PlanResult(vary, answer, total, trials, {k: v.model_dump() for k, v in slos.items()})
