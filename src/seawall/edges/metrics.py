"""Prometheus metrics, one registry per gateway (so tests can run several in one process).

Counters on the request path are plain dicts of floats, read by a collector at scrape time: a
prometheus_client ``inc()`` takes a lock and a ``labels()`` lookup, about a microsecond each, ten
times per request. The event loop is single-threaded, so a dict update is all a count needs.
Histograms stay prometheus_client's (label children cached per label tuple).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
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
        self.latency = Histogram("seawall_request_duration_seconds",
                                 "Time from request received to last byte sent.",
                                 ["route", "tier"], buckets=_LATENCY_BUCKETS_S, registry=r)
        self.ttft = Histogram("seawall_time_to_first_token_seconds",
                              "Time from request received to the first streamed event.",
                              ["deployment"], buckets=_LATENCY_BUCKETS_S, registry=r)
        self.in_flight: dict[tuple[str, ...], float] = {}
        self.gauge_callback("seawall_requests_in_flight", "Requests being served.", ["route"],
                            lambda: self.in_flight)
        self.tokens = _Counts(r, "seawall_tokens", "Tokens reported by upstreams.", ["deployment", "kind"])
        self.auth_failures = _Counts(r, "seawall_auth_failures", "Failed authentications by reason.", ["reason"])
        self.admitted = _Counts(r, "seawall_admitted", "Requests admitted, by model group and criticality.",
                                ["group", "criticality"])
        self.shed = _Counts(r, "seawall_shed", "Requests refused for capacity, by reason.",
                            ["group", "criticality", "reason"])
        self.queue_delay = Histogram("seawall_admission_queue_delay_seconds",
                                     "Time admitted requests waited for capacity.", ["group", "criticality"],
                                     buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5),
                                     registry=r)
        self._children: dict[tuple[object, ...], object] = {}

    def _child(self, metric: object, *labels: str) -> object:
        key = (id(metric), *labels)
        child = self._children.get(key)
        if child is None:
            child = metric.labels(*labels)  # type: ignore[attr-defined]
            self._children[key] = child
        return child

    def observe_request(self, route: str, tier: str, status: int, reason: str, seconds: float) -> None:
        self.requests.inc((route, tier, str(status), reason))
        self._child(self.latency, route, tier).observe(seconds)  # type: ignore[attr-defined]

    def observe_ttft(self, deployment: str, seconds: float) -> None:
        self._child(self.ttft, deployment).observe(seconds)  # type: ignore[attr-defined]

    def observe_tokens(self, deployment: str, prompt: int, completion: int) -> None:
        self.tokens.inc((deployment, "prompt"), prompt)
        self.tokens.inc((deployment, "completion"), completion)

    def gauge_in_flight(self, route: str, delta: int) -> None:
        key = (route,)
        self.in_flight[key] = self.in_flight.get(key, 0.0) + delta

    def on_admit(self, group: str, criticality: str, queued_s: float) -> None:
        self.admitted.inc((group, criticality))
        self._child(self.queue_delay, group, criticality).observe(queued_s)  # type: ignore[attr-defined]

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
