"""Prometheus metrics, one registry per gateway (so tests can run several in one process).

Counters on the request path are plain dicts of floats, read by a collector at scrape time: a
prometheus_client ``inc()`` takes a lock and a ``labels()`` lookup, about a microsecond each, ten
times per request. The event loop is single-threaded, so a dict update is all a count needs.
Histograms likewise: a bisect into the bucket bounds and three list/float updates, exported with
cumulative buckets at scrape time (prometheus_client's ``observe`` takes a lock per call).
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Iterator, Mapping, Sequence

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

__all__ = ["CONTENT_TYPE_LATEST", "GatewayMetrics"]

_LATENCY_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


class GatewayMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = _Counts(r, "seawall_requests", "Requests answered, by outcome.",
                                ["route", "tier", "status", "reason"])
        self.latency = _Histograms(r, "seawall_request_duration_seconds",
                                   "Time from request received to last byte sent.",
                                   ["route", "tier"], _LATENCY_BUCKETS_S)
        self.ttft = _Histograms(r, "seawall_time_to_first_token_seconds",
                                "Time from request received to the first streamed event.",
                                ["deployment"], _LATENCY_BUCKETS_S)
        self.in_flight: dict[tuple[str, ...], float] = {}
        self.gauge_callback("seawall_requests_in_flight", "Requests being served.", ["route"],
                            lambda: self.in_flight)
        self.tokens = _Counts(r, "seawall_tokens", "Tokens reported by upstreams.", ["deployment", "kind"])
        self.auth_failures = _Counts(r, "seawall_auth_failures", "Failed authentications by reason.", ["reason"])
        self.admitted = _Counts(r, "seawall_admitted", "Requests admitted, by model group and criticality.",
                                ["group", "criticality"])
        self.shed = _Counts(r, "seawall_shed", "Requests refused for capacity, by reason.",
                            ["group", "criticality", "reason"])
        self.queue_delay = _Histograms(r, "seawall_admission_queue_delay_seconds",
                                       "Time admitted requests waited for capacity.", ["group", "criticality"],
                                       (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5))
        self.guard = _Counts(r, "seawall_guard_decisions", "Guard decisions by direction (in: prompt, out:"
                             " stream), action, stage and whether stage 2 was skipped.",
                             ["direction", "action", "stage", "degraded"])
        self.guard_latency = _Histograms(r, "seawall_guard_duration_seconds", "Time the guard added to a prompt.",
                                         ["stage"], (0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1))
        self.guard_audits = _Counts(r, "seawall_guard_audits", "Asynchronous stage-2 audits of degraded prompts.",
                                    ["result"])

    def on_guard(self, direction: str, action: str, stage: str, degraded: bool, seconds: float) -> None:
        self.guard.inc((direction, action, stage, "true" if degraded else "false"))
        if direction == "in":
            self.guard_latency.observe((stage,), seconds)

    def on_guard_audit(self, result: str) -> None:
        self.guard_audits.inc((result,))

    def observe_request(self, route: str, tier: str, status: int, reason: str, seconds: float) -> None:
        self.requests.inc((route, tier, str(status), reason))
        self.latency.observe((route, tier), seconds)

    def observe_ttft(self, deployment: str, seconds: float) -> None:
        self.ttft.observe((deployment,), seconds)

    def observe_tokens(self, deployment: str, prompt: int, completion: int) -> None:
        self.tokens.inc((deployment, "prompt"), prompt)
        self.tokens.inc((deployment, "completion"), completion)

    def gauge_in_flight(self, route: str, delta: int) -> None:
        key = (route,)
        self.in_flight[key] = self.in_flight.get(key, 0.0) + delta

    def on_admit(self, group: str, criticality: str, queued_s: float) -> None:
        self.admitted.inc((group, criticality))
        self.queue_delay.observe((group, criticality), queued_s)

    def on_shed(self, group: str, criticality: str, reason: str) -> None:
        self.shed.inc((group, criticality, reason))

    def auth_failure(self, reason: str) -> None:
        self.auth_failures.inc((reason,))

    def gauge_callback(self, name: str, documentation: str, labels: Sequence[str],
                       read: Callable[[], Mapping[tuple[str, ...], float]]) -> None:
        """A gauge whose values are read from live state at scrape time (limits, breaker states)."""
        self.registry.register(_CallbackGauge(name, documentation, list(labels), read))

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _CallbackGauge(Collector):
    def __init__(self, name: str, documentation: str, labels: list[str],
                 read: Callable[[], Mapping[tuple[str, ...], float]]) -> None:
        self.name = name
        self.documentation = documentation
        self.labels = labels
        self.read = read

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(self.name, self.documentation, labels=self.labels)
        for label_values, value in self.read().items():
            family.add_metric(list(label_values), value)
        yield family

    def describe(self) -> Iterator[GaugeMetricFamily]:
        yield GaugeMetricFamily(self.name, self.documentation, labels=self.labels)


class _Counts(Collector):
    """A labelled counter kept in a dict; exported as ``<name>_total`` like prometheus_client's."""

    def __init__(self, registry: CollectorRegistry, name: str, documentation: str, labels: list[str]) -> None:
        self.name = name
        self.documentation = documentation
        self.labels = labels
        self.values: dict[tuple[str, ...], float] = {}
        registry.register(self)

    def inc(self, labels: tuple[str, ...], amount: float = 1.0) -> None:
        values = self.values
        values[labels] = values.get(labels, 0.0) + amount

    def collect(self) -> Iterator[CounterMetricFamily]:
        family = CounterMetricFamily(self.name, self.documentation, labels=self.labels)
        for label_values, value in list(self.values.items()):
            family.add_metric(list(label_values), value)
        yield family

    def describe(self) -> Iterator[CounterMetricFamily]:
        yield CounterMetricFamily(self.name, self.documentation, labels=self.labels)


class _Histograms(Collector):
    """A labelled histogram kept in lists; exported with cumulative buckets like prometheus_client's."""

    def __init__(self, registry: CollectorRegistry, name: str, documentation: str, labels: list[str],
                 buckets: Sequence[float]) -> None:
        self.name = name
        self.documentation = documentation
        self.labels = labels
        self.bounds = [float(b) for b in buckets]
        # Per label tuple: [count per bucket (the last one is +Inf)..., sum of observed values].
        self.values: dict[tuple[str, ...], list[float]] = {}
        registry.register(self)

    def observe(self, labels: tuple[str, ...], value: float) -> None:
        row = self.values.get(labels)
        if row is None:
            row = self.values[labels] = [0.0] * (len(self.bounds) + 2)
        row[bisect.bisect_left(self.bounds, value)] += 1  # bucket bounds are inclusive (le)
        row[-1] += value

    def collect(self) -> Iterator[HistogramMetricFamily]:
        family = HistogramMetricFamily(self.name, self.documentation, labels=self.labels)
        edges = [*(_le(b) for b in self.bounds), "+Inf"]
        for label_values, row in list(self.values.items()):
            cumulative, running = [], 0.0
            for edge, count in zip(edges, row[:-1], strict=True):
                running += count
                cumulative.append((edge, running))
            family.add_metric(list(label_values), cumulative, row[-1])
        yield family

    def describe(self) -> Iterator[HistogramMetricFamily]:
        yield HistogramMetricFamily(self.name, self.documentation, labels=self.labels)


def _le(bound: float) -> str:
    return "+Inf" if math.isinf(bound) else repr(bound)
