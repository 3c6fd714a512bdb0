"""The simulator's state: per tier, per request and per run, and the names the parts share.

A request's current attempt moves through the states below; ``gen`` (its generation) invalidates
the events of an attempt that has ended, so a stale event is a cheap no-op instead of a search in
the event queue. :class:`SimState` declares what the parts of :class:`~seawall.surge.sim.engine.Simulation`
(client, gateway, upstream, engine) share, so each part is typed on its own.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from seawall.algorithms.outcome import Outcome
from seawall.config.schema import Config
from seawall.core.errors import GatewayError
from seawall.core.types import Criticality
from seawall.surge.replica import Replica, SimClock, Waiter
from seawall.surge.scenario import ClientBehaviour, Scenario
from seawall.surge.stats import Recorder
from seawall.surge.traffic import FloodArrivals, TierSource

if TYPE_CHECKING:
    from seawall.surge.sim.upstream import _Up

__all__ = ["INVALID_TIER", "SimResult", "SimState"]

INVALID_TIER = "(invalid keys)"

# Attempt states
_IDLE, _CPU, _QUEUED, _WOKEN, _BACKOFF, _UPSTREAM = range(6)
# Upstream answers
_OK, _R429, _R500, _TIMEOUT, _DEADLINE, _R503, _R400 = range(7)

Handler = Callable[[Any, Any], None]


class _TierContext:
    """What the engine needs of one tier on every request, looked up once: its criticality, its
    clients' behaviour, and its recorder series."""

    __slots__ = ("abandon_s", "admitted", "arrivals", "backoff_initial_s", "backoff_max_s", "coarse", "crit",
                 "honour_retry_after", "index", "latency", "max_retries", "no_retries", "offered", "ok", "outcomes",
                 "reasons", "timeout_s", "ttft", "user_fail", "user_fail_reasons", "user_ok")

    def __init__(self, index: int, crit: Criticality, client: ClientBehaviour, rec: Recorder) -> None:
        self.index = index
        self.crit = crit
        self.timeout_s = client.timeout_s
        self.abandon_s = client.abandon_after_s
        self.no_retries = client.retries == "none"
        self.max_retries = client.max_retries
        self.honour_retry_after = client.honour_retry_after
        self.backoff_initial_s = client.backoff_initial_s
        self.backoff_max_s = client.backoff_max_s
        tr = rec.tiers[index]
        self.arrivals = tr.arrivals
        self.offered = tr.offered
        self.admitted = tr.admitted
        self.outcomes = tr.outcomes
        self.ok = tr.outcomes["ok"]
        self.reasons = tr.reasons
        self.user_ok = tr.user_ok
        self.user_fail = tr.user_fail
        self.user_fail_reasons = tr.user_fail_reasons
        self.latency = tr.latency
        self.ttft = tr.ttft
        self.coarse = tr.coarse


class _Req:
    """One user request and the state of its current attempt (``gen`` invalidates stale events)."""

    __slots__ = (
        "abandon",
        "cancel_armed",
        "cdl",
        "completion",
        "crit",
        "ctx",
        "cut",
        "deadline",
        "dep",
        "first_t",
        "gate",
        "gen",
        "head_limit_s",
        "hint",
        "last_err",
        "last_retry_after",
        "limit_t",
        "max_tokens",
        "model",
        "n_out",
        "permit",
        "plan",
        "prompt",
        "replica",
        "retries",
        "rid",
        "rtt_s",
        "started",
        "state",
        "stream",
        "t_end",
        "t_first",
        "t_recv",
        "ticket",
        "tier",
        "ttft_cut",
        "units",
        "up",
        "up_kind",
        "up_t0",
        "waiter",
    )

    abandon: bool
    cancel_armed: bool
    cut: bool
    cdl: float
    deadline: float
    dep: Any
    gate: Any
    hint: float | None
    last_err: Any
    last_retry_after: float | None
    limit_t: float
    head_limit_s: float
    permit: Any
    plan: Any
    replica: Replica
    rid: int
    rtt_s: float | None
    started: float
    t_end: float
    t_first: float
    t_recv: float
    ticket: Any
    ttft_cut: bool
    up: _Up | None
    up_kind: int
    up_t0: float
    waiter: Waiter

    def __init__(self, ctx: _TierContext, units: float, stream: bool, completion: int, max_tokens: int | None,
                 model: str, first_t: float, prompt: int = 0) -> None:
        self.ctx = ctx
        self.prompt = prompt
        self.tier = ctx.index
        self.crit = ctx.crit
        self.units = units
        self.stream = stream
        self.completion = completion
        self.max_tokens = max_tokens
        # the tokens the upstream writes: the completion, capped by max_tokens
        self.n_out = completion if max_tokens is None or max_tokens >= completion else max_tokens
        self.model = model
        self.first_t = first_t
        self.retries = 0
        self.gen = 0
        self.state = _IDLE


@dataclass
class SimResult:
    """What one simulated run produced, ready for the report."""

    scenario: Scenario
    profile: str
    replicas: int
    seed: int
    recorder: Recorder
    wall_s: float
    events: int
    requests: int  # HTTP requests that reached the gateway replicas (client retries and floods too)
    user_requests: int
    upstream: dict[str, dict[str, Any]] = field(default_factory=dict)
    budget: dict[str, Any] = field(default_factory=dict)
    shards: int = 1

    @property
    def tiers(self) -> list[str]:
        return self.recorder.tier_names



class SimState:
    """What the parts of a simulation share (set by ``Simulation.__init__``)."""

    scenario: Scenario
    config: Config
    profile: str
    seed: int
    n_replicas: int
    clock: SimClock
    recorder: Recorder
    replicas: list[Replica]
    ups: dict[str, _Up]
    pending: int
    requests: int
    user_requests: int
    events: int
    _lb: Callable[[], float]
    _client_random: Callable[[], float]
    _poll_random: Callable[[], float]
    _tiers: list[_TierContext]
    _sources: list[TierSource]
    _floods: FloodArrivals
    _metrics: list[tuple[str, str, float]]
    _net_rtt: float
    _client_rtt: float
    _cpu_proxied: float
    _cpu_rejected: float
    _cpu_admitted: float
    _cpu_auth: float
    _max_timeout_s: float
    _times: list[float]
    _due: dict[float, Any]
    _answers: dict[tuple[str, int, bool], tuple[GatewayError, Outcome]]

    if TYPE_CHECKING:  # the parts call each other through these
        def _push(self, t: float, fn: Handler, a: Any, b: Any) -> None: ...
        def _at(self, req: _Req, t: float, fn: Handler, b: Any) -> None: ...
        def _process(self, req: _Req, gen: int) -> None: ...
        def _succeed(self, req: _Req) -> None: ...
        def _fail(self, req: _Req, status: int, reason: str, retry_after: float | None) -> None: ...
        def _client_timeout(self, req: _Req, gen: int) -> None: ...
        def _first_byte(self, req: _Req, tag: tuple[int, int]) -> None: ...
        def _stream_end(self, req: _Req, tag: tuple[int, int]) -> None: ...
        def _upstream_done(self, req: _Req, tag: tuple[int, int]) -> None: ...
        def _head_timer(self, req: _Req, tag: tuple[int, int]) -> None: ...
        def _cut(self, req: _Req, tag: tuple[int, int]) -> None: ...
        def _wake(self, up: _Up) -> None: ...
        def _release_upstream(self, req: _Req) -> None: ...
