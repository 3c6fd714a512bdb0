"""The gateway's own histograms export exactly what prometheus_client's would for the same values."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Histogram, generate_latest

from seawall.edges.metrics import GatewayMetrics

VALUES = [0.0, 0.004, 0.005, 0.0051, 0.3, 2.5, 7.0, 59.9, 200.0, 0.05, 0.05]


def _samples(text: bytes, name: str) -> list[str]:
    return sorted(line for line in text.decode().splitlines() if line.startswith(name) and "_created" not in line)


def test_histogram_exposition_matches_prometheus_client() -> None:
    ours = GatewayMetrics()
    reference_registry = CollectorRegistry()
    reference = Histogram("seawall_request_duration_seconds", "x", ["route", "tier"],
                          buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
                          registry=reference_registry)
    for i, v in enumerate(VALUES):
        tier = "free" if i % 2 else "enterprise"
        ours.observe_request("chat", tier, 200, "ok", v)
        reference.labels("chat", tier).observe(v)
    name = "seawall_request_duration_seconds"
    expected = _samples(generate_latest(reference_registry), name)
    assert expected and _samples(ours.render(), name) == expected


def test_queue_delay_and_ttft_histograms_count_every_observation() -> None:
    m = GatewayMetrics()
    for v in (0.0005, 0.02, 9.0):
        m.on_admit("chat", "critical", v)
        m.observe_ttft("dep-a", v)
    text = m.render().decode()
    assert 'seawall_admission_queue_delay_seconds_bucket{criticality="critical",group="chat",le="0.001"} 1.0' in text
    assert 'seawall_admission_queue_delay_seconds_count{criticality="critical",group="chat"} 3.0' in text
    assert 'seawall_time_to_first_token_seconds_bucket{deployment="dep-a",le="+Inf"} 3.0' in text
    assert 'seawall_time_to_first_token_seconds_sum{deployment="dep-a"} 9.0205' in text
