"""The surge simulator: a discrete-event run of a scenario against N gateway replicas.

A virtual clock and a queue of events (arrivals, upstream completions, queue deadlines, backoffs,
client timeouts and retries, scenario events, gauge ticks) drive the gateway's own decision
objects (:mod:`seawall.surge.replica`), one set per replica, behind a random load balancer, in
front of the upstream deployments, each running the very behaviour model the mock upstream runs
(``seawall.mock.servers``: fixed slots, continuous batching, a hosted provider).

Deterministic for a seed: arrivals and shapes come from per-tier generators
(:mod:`seawall.surge.traffic`), the gateway's randomness (balancer, backoff jitter), the clients'
(SDK jitter) and the load balancer's from their own seeded streams, and events due at the same
instant run first in, first out. Memory is bounded by the work in flight plus the
:class:`~seawall.surge.stats.Recorder` buckets: no per-request history is kept.

The client model is the OpenAI SDK's (``ClientBehaviour``); the gateway's CPU is modelled per
replica as one event loop (``GatewayCpu``): work beyond one core queues, and that queue is the
loop lag the admission policy sheds on.

Speed (``bench/sim.py``: ten million requests in under two minutes). Every request runs the
gateway's own decision code, so what the simulator can make cheap is only its own part: the event
queue (``engine.py``), per-tier constants and the recorder's series looked up once, not per request
(``state.py``), and the paths most requests take (a refusal, a client retry, an invalid key)
written straight through rather than through small helpers. Beyond that, a large run can be cut
into shards that run on several cores (``shards.py``, :func:`simulate`).

One job per file: ``state.py`` (per tier, per request, per run), ``engine.py`` (the event loop and
gauges), ``client.py`` (users and their SDK clients), ``gateway.py`` (the replicas: drives the
gateway's own decisions, takes none), ``upstream.py`` (the deployments' behaviour models and
scenario events), ``shards.py`` (running one or many shards).
"""

from seawall.surge.sim.engine import Simulation
from seawall.surge.sim.shards import run_shard, simulate
from seawall.surge.sim.state import INVALID_TIER, SimResult
from seawall.surge.sim.upstream import capacity_of, server_of

__all__ = ["INVALID_TIER", "SimResult", "Simulation", "capacity_of", "run_shard", "server_of", "simulate"]
