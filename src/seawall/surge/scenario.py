"""Surge scenarios: what arrives, when, in what shape, how clients behave, what breaks, what is promised.

A scenario is one YAML file, validated with pydantic; every problem is reported with its path in
the file (``phases[1].rates.free.end_per_s: Input should be greater than or equal to 0``), all in
one pass, like the gateway's own config. The same scenario drives the live load generator
(:mod:`seawall.surge.live`) and the simulator (:mod:`seawall.surge.sim`), so both see the same
traffic: the arrival times and request shapes come from one seeded generator
(:mod:`seawall.surge.traffic`).

Times in a scenario are seconds from its start (``at_s``) or durations (``duration_s``); rates are
requests per second. :meth:`Scenario.scaled` compresses the timeline (``time_scale``) and the load
(``load_scale``: arrival rates and upstream capacity together) so an internet-scale scenario can be
replayed on one machine with the same shape; latencies, timeouts and backoff are physics and are
never scaled.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator, Sequence
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from seawall.config.load import validation_problems

__all__ = [
    "ClientBehaviour",
    "Deployment",
    "Dist",
    "Event",
    "Phase",
    "Rate",
    "RequestShape",
    "Scenario",
    "ScenarioError",
    "Slo",
    "TierTraffic",
    "load_scenario",
    "parse_scenario",
    "shipped_scenarios",
]


class ScenarioError(Exception):
    """Every problem found in a scenario, each as ``path: message``."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


def _constant_shorthand(kind_field: str, value_field: str) -> Any:
    """Let YAML say ``free: 40`` for ``free: {kind: constant, per_s: 40}``."""

    def convert(value: Any) -> Any:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return {kind_field: "constant", value_field: value}
        return value

    return convert


# -- arrival rates -------------------------------------------------------------------------------


class RateConstant(_Strict):
    kind: Literal["constant"]
    per_s: float = Field(ge=0, description="requests per second")

    def at(self, t_s: float, duration_s: float) -> float:
        return self.per_s

    def peak(self, t0_s: float, t1_s: float, duration_s: float) -> float:
        return self.per_s


class RateLinear(_Strict):
    """A straight ramp from ``start_per_s`` at the phase start to ``end_per_s`` at its end."""

    kind: Literal["linear"]
    start_per_s: float = Field(ge=0)
    end_per_s: float = Field(ge=0)

    def at(self, t_s: float, duration_s: float) -> float:
        frac = min(1.0, max(0.0, t_s / duration_s)) if duration_s > 0 else 1.0
        return self.start_per_s + (self.end_per_s - self.start_per_s) * frac

    def peak(self, t0_s: float, t1_s: float, duration_s: float) -> float:
        return max(self.at(t0_s, duration_s), self.at(t1_s, duration_s))


class RateExponential(_Strict):
    """Geometric growth (or decay) from ``start_per_s`` to ``end_per_s`` over the phase: news
    spreading — each minute multiplies the traffic by the same factor."""

    kind: Literal["exponential"]
    start_per_s: float = Field(gt=0)
    end_per_s: float = Field(gt=0)

    def at(self, t_s: float, duration_s: float) -> float:
        frac = min(1.0, max(0.0, t_s / duration_s)) if duration_s > 0 else 1.0
        return self.start_per_s * (self.end_per_s / self.start_per_s) ** frac

    def peak(self, t0_s: float, t1_s: float, duration_s: float) -> float:
        return max(self.at(t0_s, duration_s), self.at(t1_s, duration_s))


class RateSpike(_Strict):
    """A spike on a base rate: rises exponentially (time constant ``rise_s``) to ``peak_per_s`` at
    ``peak_at_s`` (from the phase start), then decays exponentially (``decay_s``)."""

    kind: Literal["spike"]
    base_per_s: float = Field(ge=0)
    peak_per_s: float = Field(ge=0)
    peak_at_s: float = Field(ge=0)
    rise_s: float = Field(1.0, gt=0)
    decay_s: float = Field(60.0, gt=0)

    def at(self, t_s: float, duration_s: float) -> float:
        dt = t_s - self.peak_at_s
        tau = self.rise_s if dt < 0 else self.decay_s
        return self.base_per_s + (self.peak_per_s - self.base_per_s) * math.exp(-abs(dt) / tau)

    def peak(self, t0_s: float, t1_s: float, duration_s: float) -> float:
        if t0_s <= self.peak_at_s <= t1_s:
            return max(self.base_per_s, self.peak_per_s)
        return max(self.at(t0_s, duration_s), self.at(t1_s, duration_s))


class RateDiurnal(_Strict):
    """A day's curve: ``mean_per_s * (1 + amplitude * cos(2 pi (t - peak_at_s) / period_s))``,
    ``t`` from the phase start (so ``peak_at_s: 50400`` puts the peak at 14:00 of a day that starts
    at midnight)."""

    kind: Literal["diurnal"]
    mean_per_s: float = Field(ge=0)
    amplitude: float = Field(0.5, ge=0, le=1, description="peak-to-mean as a fraction of the mean")
    period_s: float = Field(86_400.0, gt=0)
    peak_at_s: float = Field(50_400.0)

    def at(self, t_s: float, duration_s: float) -> float:
        phase = 2.0 * math.pi * (t_s - self.peak_at_s) / self.period_s
        return self.mean_per_s * (1.0 + self.amplitude * math.cos(phase))

    def peak(self, t0_s: float, t1_s: float, duration_s: float) -> float:
        # Bounded slope: the curve moves at most mean*amp*2pi/period per second.
        slope = self.mean_per_s * self.amplitude * 2.0 * math.pi / self.period_s
        return max(self.at(t0_s, duration_s), self.at(t1_s, duration_s)) + slope * (t1_s - t0_s) / 2.0


Rate = Annotated[
    RateConstant | RateLinear | RateExponential | RateSpike | RateDiurnal,
    Field(discriminator="kind"),
]


# -- request shapes ------------------------------------------------------------------------------


class DistConstant(_Strict):
    kind: Literal["constant"]
    value: float = Field(ge=0)

    def quantile(self, q: float) -> float:
        return self.value


class DistUniform(_Strict):
    kind: Literal["uniform"]
    low: float = Field(ge=0)
    high: float = Field(ge=0)

    @model_validator(mode="after")
    def _order(self) -> DistUniform:
        if self.high < self.low:
            raise ValueError("high must be >= low")
        return self

    def quantile(self, q: float) -> float:
        return self.low + (self.high - self.low) * q


class DistLognormal(_Strict):
    """Long-tailed, as prompt and completion lengths are: given by its median and its p99."""

    kind: Literal["lognormal"]
    median: float = Field(gt=0)
    p99: float = Field(gt=0)

    @model_validator(mode="after")
    def _order(self) -> DistLognormal:
        if self.p99 < self.median:
            raise ValueError("p99 must be >= median")
        return self

    def quantile(self, q: float) -> float:
        from statistics import NormalDist

        sigma = math.log(self.p99 / self.median) / 2.3263478740408408  # z(0.99)
        q = min(max(q, 1e-9), 1 - 1e-9)
        return self.median * math.exp(sigma * NormalDist().inv_cdf(q))


class DistChoice(_Strict):
    kind: Literal["choice"]
    values: list[float] = Field(min_length=1)
    weights: list[float] | None = None

    @model_validator(mode="after")
    def _weights(self) -> DistChoice:
        if self.weights is not None:
            if len(self.weights) != len(self.values):
                raise ValueError("weights must have one entry per value")
            if any(w < 0 for w in self.weights) or sum(self.weights) <= 0:
                raise ValueError("weights must be >= 0 and not all 0")
        return self

    def quantile(self, q: float) -> float:
        weights = self.weights or [1.0] * len(self.values)
        total = sum(weights)
        acc = 0.0
        for value, weight in zip(self.values, weights, strict=True):
            acc += weight / total
            if q < acc:
                return value
        return self.values[-1]


Dist = Annotated[DistConstant | DistUniform | DistLognormal | DistChoice, Field(discriminator="kind")]
_DIST_SHORTHAND = _constant_shorthand("kind", "value")


class RequestShape(_Strict):
    """What one request looks like. Token counts are drawn per request; ``max_tokens: null`` sends
    none (the gateway then budgets 256); ``completion_tokens`` is what the model actually writes
    (capped by ``max_tokens``)."""

    prompt_tokens: Dist = Field(default_factory=lambda: DistLognormal(kind="lognormal", median=300, p99=3000))
    max_tokens: Dist | None = Field(default_factory=lambda: DistConstant(kind="constant", value=512))
    completion_tokens: Dist = Field(
        default_factory=lambda: DistLognormal(kind="lognormal", median=120, p99=800))
    stream_fraction: float = Field(0.5, ge=0, le=1)
    models: dict[str, float] = Field(default_factory=lambda: {"chat": 1.0}, min_length=1,
                                     description="model name -> share of requests")

    @field_validator("prompt_tokens", "max_tokens", "completion_tokens", mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        return _DIST_SHORTHAND(value)

    @field_validator("models")
    @classmethod
    def _shares(cls, value: dict[str, float]) -> dict[str, float]:
        if any(v < 0 for v in value.values()) or sum(value.values()) <= 0:
            raise ValueError("shares must be >= 0 and not all 0")
        return value


class ClientBehaviour(_Strict):
    """How the clients of a tier behave when a request fails or is slow.

    ``retries: sdk`` is the official OpenAI SDK's policy: up to ``max_retries`` (default 2) retries
    on 408, 409, 429, 5xx and connection errors; the wait is the server's ``retry-after-ms`` /
    ``retry-after`` when it is in (0, 120] s, else ``min(0.5 * 2**n, 8) * (1 - 0.25 * u)``; the
    ``x-should-retry`` header overrides. ``none`` never retries. ``timeout_s`` bounds each attempt
    (the client then cancels it: the gateway sees a disconnect) and counts as a retryable error;
    ``abandon_after_s`` bounds the whole request, retries included (the user gives up).
    """

    retries: Literal["sdk", "none"] = "sdk"
    max_retries: int = Field(2, ge=0, le=20)
    backoff_initial_s: float = Field(0.5, ge=0)
    backoff_max_s: float = Field(8.0, ge=0)
    honour_retry_after: bool = True
    timeout_s: float = Field(60.0, gt=0)
    abandon_after_s: float | None = Field(None, gt=0)


class TierTraffic(_Strict):
    """One population of clients, all using keys of the gateway tier named by the mapping key."""

    shape: RequestShape | None = None
    client: ClientBehaviour | None = None


class Phase(_Strict):
    name: str = Field(min_length=1)
    duration_s: float = Field(gt=0)
    rates: dict[str, Rate] = Field(default_factory=dict, description="tier -> arrival rate")

    @field_validator("rates", mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        if isinstance(value, dict):
            convert = _constant_shorthand("kind", "per_s")
            return {k: convert(v) for k, v in value.items()}
        return value


# -- the upstream model --------------------------------------------------------------------------


class Deployment(_Strict):
    """One upstream deployment, modelled by the mock upstream's behaviour models
    (:mod:`seawall.mock.servers`, the same code ``seawall mock-upstream`` runs), chosen by
    ``behaviour``:

    - ``slots``: at most ``max_in_flight`` requests at once (beyond: 429 at once, with the mock's
      ``retry-after``); the first token after ``base_latency_s + first_token_delay_s``, then
      ``tokens_per_s``.
    - ``batching`` (vLLM, TGI, SGLang): ``max_in_flight`` sequences decode together (vLLM's
      ``max_num_seqs``), at ``tokens_per_s`` alone and ``batch_slowdown`` times slower when full;
      each prefill (``prefill_tokens_per_s``) stalls the batch; ``kv_cache_tokens`` bounds the
      admitted prompt plus output tokens; the rest waits in FIFO order, never a 429.
    - ``hosted`` (OpenAI, Anthropic): ``requests_per_minute`` and ``tokens_per_minute`` (prompt plus
      ``max_tokens``) for the gateway's key, 429 with the time until the budget is back; latency
      times ``1 + (in_flight / max_in_flight)^2``; ``overloaded_rate`` of requests answered 503,
      more under load.

    ``error_rate`` of requests answer 500 after the base latency, whatever the behaviour.
    ``metrics``: the gateway is given the server's ``/metrics`` as ``metrics_url`` (its queue then
    feeds admission, policies/upstream_load.py); the simulator reads the same gauges from the model.
    ``ttft_timeout_s``: the gateway's ``ttft_timeout_s`` for this deployment (streams fail over when
    no first token came by then).
    ``load_scale`` and shards scale ``max_in_flight`` and the other capacities (prefill speed, KV
    cache, rate limits) together."""

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.\-]+$")
    behaviour: str = Field("slots", description="a kind in seawall.mock.model BEHAVIOURS: slots, batching, hosted")
    max_in_flight: int = Field(ge=1)
    base_latency_s: float = Field(0.2, ge=0)
    first_token_delay_s: float = Field(0.0, ge=0)
    tokens_per_s: float = Field(100.0, ge=0, description="0: every token at once")
    error_rate: float = Field(0.0, ge=0, le=1)
    prefill_tokens_per_s: float = Field(20000.0, gt=0)
    batch_slowdown: float = Field(2.0, ge=1)
    kv_cache_tokens: int | None = Field(None, ge=1)
    requests_per_minute: float | None = Field(None, gt=0)
    tokens_per_minute: float | None = Field(None, gt=0)
    overloaded_rate: float = Field(0.0, ge=0, le=1)
    metrics: bool = Field(False, description="the gateway reads the server's /metrics (metrics_url)")
    ttft_timeout_s: float | None = Field(None, gt=0, description="the gateway's first-token timeout for it")
    priority: int = Field(0, ge=0)
    weight: float = Field(1.0, ge=0)

    @field_validator("behaviour")
    @classmethod
    def _behaviour(cls, value: str) -> str:
        from seawall.mock.model import BEHAVIOURS

        if value not in BEHAVIOURS:
            raise ValueError(f"unknown behaviour {value!r}; known: {', '.join(BEHAVIOURS)}")
        return value

    def mock_fields(self) -> dict[str, Any]:
        """The mock upstream's config (``MockConfig`` fields) that serves this deployment: what
        ``seawall mock-upstream`` runs for it live, and what the simulator builds its model from."""
        fields: dict[str, Any] = {"behaviour": self.behaviour, "base_latency_s": self.base_latency_s,
                                  "first_token_delay_s": self.first_token_delay_s,
                                  "tokens_per_s": self.tokens_per_s, "error_rate": self.error_rate}
        if self.behaviour == "batching":
            fields.update(max_num_seqs=self.max_in_flight, prefill_tokens_per_s=self.prefill_tokens_per_s,
                          batch_slowdown=self.batch_slowdown)
            if self.kv_cache_tokens is not None:
                fields["kv_cache_tokens"] = self.kv_cache_tokens
        elif self.behaviour == "hosted":
            fields.update(soft_concurrency=self.max_in_flight, overloaded_rate=self.overloaded_rate)
            for name in ("requests_per_minute", "tokens_per_minute"):
                if getattr(self, name) is not None:
                    fields[name] = getattr(self, name)
        else:
            fields["max_in_flight"] = self.max_in_flight
        return fields

    @model_validator(mode="after")
    def _batching_decodes(self) -> Deployment:
        if self.behaviour == "batching" and self.tokens_per_s <= 0:
            raise ValueError("a batching deployment needs tokens_per_s > 0")
        return self


class UpstreamModel(_Strict):
    name: str = Field(min_length=1)
    deployments: list[Deployment] = Field(min_length=1)
    balancing: Literal["weighted", "least_inflight", "latency"] = "latency"


class Upstream(_Strict):
    models: list[UpstreamModel] = Field(min_length=1)
    network_rtt_s: float = Field(0.001, ge=0, description="one gateway<->upstream round trip on the wire")


class GatewayCpu(_Strict):
    """A model of one gateway replica's CPU (one event loop): seconds of CPU per request by path.
    Work beyond one core queues, which is the event-loop lag the admission policy sheds on."""

    proxied_s: float = Field(0.0004, ge=0)
    rejected_s: float = Field(0.0001, ge=0)
    auth_failure_s: float = Field(0.00005, ge=0)


class Gateway(_Strict):
    replicas: int = Field(1, ge=1, le=10_000)
    client_rtt_s: float = Field(0.0005, ge=0, description="one client<->gateway round trip")
    cpu: GatewayCpu = Field(default_factory=GatewayCpu)
    config: dict[str, Any] = Field(
        default_factory=dict,
        description="overlay on seawall's defaults (sections admission, resilience, auth, server, tiers)")


# -- timed events --------------------------------------------------------------------------------


class _At(_Strict):
    at_s: float = Field(ge=0)


class DeploymentDown(_At):
    kind: Literal["deployment_down"]
    deployment: str


class DeploymentSlow(_At):
    """Latency to the first token and time per token both multiply by ``factor``."""

    kind: Literal["deployment_slow"]
    deployment: str
    factor: float = Field(gt=0)


class DeploymentRecover(_At):
    kind: Literal["deployment_recover"]
    deployment: str


class InvalidKeyFlood(_At):
    """A login storm: ``per_s`` requests with invalid keys for ``duration_s``, from ``addresses``
    client addresses."""

    kind: Literal["invalid_key_flood"]
    per_s: float = Field(gt=0)
    duration_s: float = Field(gt=0)
    addresses: int = Field(20, ge=1, le=250)


class CapacityAdded(_At):
    """Capacity asked for at ``at_s`` (say, an autoscaler reacting) that serves from
    ``at_s + cold_start_s``: the deployment's ``max_in_flight`` grows by ``max_in_flight``."""

    kind: Literal["capacity_added"]
    deployment: str
    max_in_flight: int = Field(ge=1)
    cold_start_s: float = Field(0.0, ge=0)


Event = Annotated[
    DeploymentDown | DeploymentSlow | DeploymentRecover | InvalidKeyFlood | CapacityAdded,
    Field(discriminator="kind"),
]


class Slo(_Strict):
    """What a tier is promised, over the whole run: the share of requests that succeed (after the
    client's own retries), and the p99 latency of those that do."""

    success_rate_pct: float | None = Field(None, ge=0, le=100)
    p99_latency_s: float | None = Field(None, gt=0)


class Scenario(_Strict):
    name: str = Field(min_length=1, pattern=r"^[a-z0-9][a-z0-9_\-]*$")
    description: str = ""
    seed: int = 1
    upstream: Upstream
    gateway: Gateway = Field(default_factory=Gateway)
    shape: RequestShape = Field(default_factory=RequestShape, description="default for every tier")
    client: ClientBehaviour = Field(default_factory=ClientBehaviour, description="default for every tier")
    tiers: dict[str, TierTraffic] = Field(min_length=1, description="gateway tier name -> its clients")
    phases: list[Phase] = Field(min_length=1)
    events: list[Event] = Field(default_factory=list)
    slo: dict[str, Slo] = Field(default_factory=dict)
    recovery_from_s: float | None = Field(
        None, ge=0, description="when the disturbance ends, for recovery time (default: the last phase's start)")

    @field_validator("tiers", mode="before")
    @classmethod
    def _empty_tiers(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {k: ({} if v is None else v) for k, v in value.items()}
        return value

    @model_validator(mode="after")
    def _cross_refs(self) -> Scenario:
        problems: list[str] = []
        tiers = set(self.tiers)
        models = {m.name for m in self.upstream.models}
        dep_names: list[str] = [d.name for m in self.upstream.models for d in m.deployments]
        if len(set(dep_names)) != len(dep_names):
            problems.append("upstream.models: deployment names must be unique across models")
        if len(models) != len(self.upstream.models):
            problems.append("upstream.models: model names must be unique")
        for i, phase in enumerate(self.phases):
            for tier in phase.rates:
                if tier not in tiers:
                    problems.append(f"phases[{i}].rates.{tier}: unknown tier (declare it under tiers)")
        for tier, traffic in self.tiers.items():
            shape = traffic.shape or self.shape
            for model in shape.models:
                if model not in models:
                    where = f"tiers.{tier}.shape.models" if traffic.shape else "shape.models"
                    problems.append(f"{where}.{model}: unknown model (declare it under upstream.models)")
        for i, event in enumerate(self.events):
            name = getattr(event, "deployment", None)
            if name is not None and name not in dep_names:
                problems.append(f"events[{i}].deployment: unknown deployment '{name}'")
        for tier in self.slo:
            if tier not in tiers:
                problems.append(f"slo.{tier}: unknown tier")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    # -- derived ---------------------------------------------------------------------------------

    @property
    def duration_s(self) -> float:
        return sum(p.duration_s for p in self.phases)

    def phase_starts(self) -> list[float]:
        starts, t = [], 0.0
        for phase in self.phases:
            starts.append(t)
            t += phase.duration_s
        return starts

    def recovery_start_s(self) -> float:
        return self.recovery_from_s if self.recovery_from_s is not None else self.phase_starts()[-1]

    def shape_of(self, tier: str) -> RequestShape:
        return self.tiers[tier].shape or self.shape

    def client_of(self, tier: str) -> ClientBehaviour:
        return self.tiers[tier].client or self.client

    def deployments(self) -> Iterator[tuple[UpstreamModel, Deployment]]:
        for model in self.upstream.models:
            for dep in model.deployments:
                yield model, dep

    def expected_requests(self, step_s: float = 1.0) -> float:
        """Expected user requests (valid keys; client retries and floods not counted)."""
        total = 0.0
        for phase in self.phases:
            n = max(1, math.ceil(phase.duration_s / step_s))
            dt = phase.duration_s / n
            for rate in phase.rates.values():
                total += sum(rate.at((i + 0.5) * dt, phase.duration_s) for i in range(n)) * dt
        return total

    def scaled(self, *, time_scale: float = 1.0, load_scale: float = 1.0) -> Scenario:
        """The same scenario on a compressed timeline and/or at a smaller (or larger) load.

        ``time_scale`` multiplies every duration and instant of the timeline (phases, events, the
        flood, cold starts, the diurnal period); ``load_scale`` multiplies arrival rates (floods too)
        and upstream capacity (``max_in_flight``, at least 1), so the load stays in proportion to
        capacity. Latencies, timeouts and backoff are not scaled."""
        if time_scale <= 0 or load_scale <= 0:
            raise ValueError("scales must be > 0")
        if time_scale == 1.0 and load_scale == 1.0:
            return self
        data = self.model_dump(mode="python", by_alias=True)
        ts, ls = time_scale, load_scale
        _scale_rates(data, ls)
        for phase in data["phases"]:
            phase["duration_s"] *= ts
            for rate in phase["rates"].values():
                for key in ("peak_at_s", "rise_s", "decay_s", "period_s"):
                    if key in rate:
                        rate[key] *= ts
        for model in data["upstream"]["models"]:
            for dep in model["deployments"]:
                dep["max_in_flight"] = max(1, round(dep["max_in_flight"] * ls))
                _scale_capacities(dep, ls)
        for event in data["events"]:
            event["at_s"] *= ts
            if event["kind"] == "invalid_key_flood":
                event["duration_s"] *= ts
            if event["kind"] == "capacity_added":
                event["max_in_flight"] = max(1, round(event["max_in_flight"] * ls))
                event["cold_start_s"] *= ts
        if data.get("recovery_from_s") is not None:
            data["recovery_from_s"] *= ts
        return Scenario.model_validate(data)

    def split(self, parts: Sequence[int]) -> list[Scenario]:
        """The scenario cut into ``len(parts)`` shares that together make the whole: share ``i``
        gets ``parts[i] / sum(parts)`` of every arrival rate (floods too) and the same proportion,
        in whole slots, of every upstream's capacity (``max_in_flight``, capacity added); the slots
        of a deployment add up to its own exactly. The simulator runs shards of a large run this way
        (``surge sim --shards``), ``parts`` being the replicas in each. Every deployment needs at
        least one slot per share."""
        if not parts or any(p < 1 for p in parts):
            raise ValueError("parts must be positive")
        total = sum(parts)
        edges = [0, *itertools.accumulate(parts)]

        def cut(n: int, where: str) -> list[int]:
            out = [n * b // total - n * a // total for a, b in itertools.pairwise(edges)]
            if min(out) < 1:
                raise ValueError(f"{where}: {n} slots cannot be split into {len(parts)} shares "
                                 f"of {', '.join(map(str, parts))} replicas (use fewer shards)")
            return out

        caps = {(m, d): cut(dep.max_in_flight, f"upstream.models[{m}].deployments[{d}].max_in_flight")
                for m, model in enumerate(self.upstream.models) for d, dep in enumerate(model.deployments)}
        added = {e: cut(event.max_in_flight, f"events[{e}].max_in_flight")
                 for e, event in enumerate(self.events) if isinstance(event, CapacityAdded)}
        shares = []
        for i, part in enumerate(parts):
            data = self.model_dump(mode="python", by_alias=True)
            _scale_rates(data, part / total)
            for (m, d), slots in caps.items():
                dep = data["upstream"]["models"][m]["deployments"][d]
                _scale_capacities(dep, slots[i] / dep["max_in_flight"])
                dep["max_in_flight"] = slots[i]
            for e, slots in added.items():
                data["events"][e]["max_in_flight"] = slots[i]
            shares.append(Scenario.model_validate(data))
        return shares


def _scale_capacities(dep: dict[str, Any], factor: float) -> None:
    """A dumped deployment's capacities besides its slots (prefill speed, KV cache, rate limits)
    times ``factor``: a share of the deployment, or the deployment at another load scale."""
    dep["prefill_tokens_per_s"] *= factor
    if dep.get("kv_cache_tokens") is not None:
        dep["kv_cache_tokens"] = max(1, round(dep["kv_cache_tokens"] * factor))
    for key in ("requests_per_minute", "tokens_per_minute"):
        if dep.get(key) is not None:
            dep[key] *= factor


def _scale_rates(data: dict[str, Any], factor: float) -> None:
    """Multiply every arrival rate of a dumped scenario, the invalid-key floods' too, by ``factor``."""
    for phase in data["phases"]:
        for rate in phase["rates"].values():
            for key in ("per_s", "start_per_s", "end_per_s", "base_per_s", "peak_per_s", "mean_per_s"):
                if key in rate:
                    rate[key] *= factor
    for event in data["events"]:
        if event["kind"] == "invalid_key_flood":
            event["per_s"] *= factor


# -- loading -------------------------------------------------------------------------------------


_UNION_TAGS = frozenset({
    "constant", "linear", "exponential", "spike", "diurnal", "uniform", "lognormal", "choice",
    "deployment_down", "deployment_slow", "deployment_recover", "invalid_key_flood", "capacity_added"})


def parse_scenario(data: Any) -> Scenario:
    """Validate a parsed YAML document; :class:`ScenarioError` lists every problem with its path."""
    if not isinstance(data, dict):
        raise ScenarioError(["(top level): expected a mapping"])
    try:
        return Scenario.model_validate(data)
    except ValidationError as exc:
        raise ScenarioError(validation_problems(exc, _UNION_TAGS)) from None


def shipped_scenarios() -> dict[str, str]:
    """Name -> YAML text of the scenarios shipped in the package."""
    root = resources.files("seawall.surge") / "scenarios"
    return {entry.name.removesuffix(".yaml"): entry.read_text(encoding="utf-8")
            for entry in sorted(root.iterdir(), key=lambda e: e.name) if entry.name.endswith(".yaml")}


def load_scenario(name_or_path: str | Path) -> Scenario:
    """A shipped scenario by name (``scandal-surge``) or a YAML file by path."""
    path = Path(name_or_path)
    shipped = shipped_scenarios()
    if not path.exists() and str(name_or_path) in shipped:
        text, where = shipped[str(name_or_path)], str(name_or_path)
    else:
        try:
            text, where = path.read_text(encoding="utf-8"), str(path)
        except (OSError, UnicodeDecodeError) as exc:
            known = ", ".join(shipped)
            raise ScenarioError([f"{name_or_path}: cannot read ({exc.__class__.__name__}); "
                                 f"shipped scenarios: {known}"]) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ScenarioError([f"{where}: not valid YAML{at}"]) from None
    return parse_scenario(data)
