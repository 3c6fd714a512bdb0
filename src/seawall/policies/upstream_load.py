"""What a self-hosted server's own metrics change: its queue depth feeds the limit and the balancer.

A continuous-batching server (vLLM, TGI, SGLang) never refuses: work beyond what it runs at once
waits in its FIFO queue, where seawall's priorities mean nothing and every paying request waits
behind free ones. Latency says so late and diluted; the server's metrics say it exactly
(``vllm:num_requests_waiting``). Given a report, :func:`report_load` takes the gateway's share of
the waiting work off the model group's limit (so that work waits in seawall's queue, by priority)
and tells the balancer how much of this deployment's work it runs. The gateway's metrics poller
(:mod:`seawall.edges.upstream_metrics`) and the surge simulator both call it.
"""

from __future__ import annotations

from dataclasses import dataclass

from seawall.policies.deployment import DeploymentHandle
from seawall.policies.gate import AdmissionGate

__all__ = ["UpstreamLoad", "report_load"]


@dataclass(frozen=True, slots=True)
class UpstreamLoad:
    """One reading of a server's load: sequences it runs and holds waiting (every client's, not
    only this gateway's), and the share of its KV cache in use when it says."""

    running: float
    waiting: float
    kv_cache_usage: float | None = None


def report_load(gate: AdmissionGate | None, deployment: DeploymentHandle, load: UpstreamLoad, now_s: float) -> None:
    """Apply one reading: this gateway's share of the waiting work, assuming its requests are mixed
    in the server's queue as in its batch (``in flight here * waiting / (running + waiting)``), comes
    off the group's limit at once (``LimitAlgorithm.on_upstream_queue``); the deployment's headroom
    for the balancer is the share of the work it holds that it runs."""
    total = load.running + load.waiting
    if total <= 0.0:
        deployment.headroom = 1.0
        if gate is not None:
            gate.limit.on_upstream_queue(now_s, gate.limiter.inflight, 0.0, gate.service_s)
        return
    running_share = load.running / total
    deployment.headroom = running_share
    if gate is not None:
        waiting_units = deployment.inflight_units * (1.0 - running_share)
        gate.limit.on_upstream_queue(now_s, gate.limiter.inflight, waiting_units, gate.service_s)
