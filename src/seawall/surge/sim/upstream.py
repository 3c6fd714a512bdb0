"""The upstream deployments: the mock's own behaviour models, shared by every replica.

Each deployment runs the model ``seawall mock-upstream`` runs for it (:mod:`seawall.mock.servers`,
built by the mock's ``server_for`` from ``Deployment.mock_fields``). A batching server decides when
tokens come, so its milestones (a first token, a finished sequence) are events here; the other
models answer with their timings at submission. Scenario events (a deployment down, slow,
recovered, grown) change the model as they would change the mock.
"""

from __future__ import annotations

import math
import random
from typing import Any

from seawall.algorithms.pacing import RateLimitReport
from seawall.core.errors import retry_after_ms
from seawall.mock.config import MockConfig
from seawall.mock.handler import openai_rate_headers
from seawall.mock.model import Server, server_for
from seawall.mock.servers import DONE, FIRST, BatchingServer, HostedServer
from seawall.providers.ratelimits import parse_rate_limits
from seawall.surge.scenario import Deployment
from seawall.surge.sim.state import _DEADLINE, _TIMEOUT, _UPSTREAM, SimState, _Req

__all__ = ["UpstreamSide", "capacity_of", "server_of"]

_WALL_EPOCH_S = 1_700_000_000.0  # SimClock.wall() at t = 0


class _Up:
    """One upstream deployment, shared by every replica: its behaviour model (the mock's own,
    :mod:`seawall.mock.servers`), the injected 500s, and for a batching server the requests it
    holds and the instant its next milestone is due (``wake_t``)."""

    __slots__ = ("down", "errors", "first_s", "hosted", "name", "random", "read_s", "reqs", "server", "total_s",
                 "wake_t")

    def __init__(self, d: Deployment, rng: random.Random, read_s: float, total_s: float) -> None:
        self.name = d.name
        self.server: Server = server_of(d)
        self.hosted = d.behaviour == "hosted"
        self.first_s = d.base_latency_s + d.first_token_delay_s  # until an injected 500 (times the factor)
        self.errors = d.error_rate
        self.down = False
        self.random = rng.random
        self.read_s = read_s  # the gateway's timeouts for this deployment
        self.total_s = total_s
        self.reqs: dict[int, _Req] = {}  # batching: request id -> request
        self.wake_t = math.inf

    def headroom(self, now: float) -> float | None:
        """What the deployment's rate-limit headers say (base.headroom_from), ``None`` without any."""
        state = self.server.rate_limits(now, self.name)
        if state is None:
            return None
        low = state.remaining_requests / state.limit_requests if state.limit_requests > 0 else 1.0
        if state.limit_tokens:
            low = min(low, (state.remaining_tokens or 0) / state.limit_tokens)
        return min(max(low, 0.0), 1.0)

    def rate_limits(self, now: float, retry_after_s: float | None = None) -> RateLimitReport | None:
        """What the gateway reads off this answer: the very headers the mock sends (their names,
        their rounding) parsed by the gateway's own parser, so the simulated pacer learns from the
        same text the live one does; ``retry_after_s``: a 429's hint, sent as the mock sends it."""
        state = self.server.rate_limits(now, self.name)
        if state is None and retry_after_s is None:
            return None
        wall_s = _WALL_EPOCH_S + now
        headers = openai_rate_headers(state, wall_s) if state is not None else {}
        if retry_after_s is not None:
            headers["retry-after"] = str(max(1, math.ceil(retry_after_s)))
            headers["retry-after-ms"] = str(retry_after_ms(retry_after_s))
        return parse_rate_limits(headers, wall_s)


def server_of(d: Deployment) -> Server:
    """The behaviour model of a scenario deployment: the one ``seawall mock-upstream`` runs for it
    live (the same fields, the same builder)."""
    return server_for(MockConfig.from_mapping(d.mock_fields()))


def capacity_of(server: Server) -> int:
    """Slots, sequences decoding at once, or the concurrency at which a provider gets twice as slow."""
    if isinstance(server, BatchingServer):
        return server.max_num_seqs
    if isinstance(server, HostedServer):
        return server.soft_concurrency
    return server.capacity or 0



class UpstreamSide(SimState):
    def _wake(self, up: _Up) -> None:
        """Make sure the batching server is run at its next milestone."""
        t = up.server.next_event_s()
        if t < up.wake_t:
            up.wake_t = t
            self._push(t, self._up_wake, up, t)

    def _up_wake(self, up: _Up, t: float) -> None:
        if t != up.wake_t:
            return  # superseded by an earlier wake
        up.wake_t = math.inf
        now = self.clock.t
        reqs = up.reqs
        rtt = self._net_rtt
        for rid, kind, at in up.server.advance(now):
            req = reqs.get(rid)
            if req is None:
                continue
            if kind == FIRST:
                if req.stream:
                    self._at(req, at + rtt, self._first_byte, (req.gen, req.plan.sent))
            elif kind == DONE:
                req.t_end = at + rtt
                self._at(req, at + rtt, self._stream_end if req.stream else self._upstream_done,
                         (req.gen, req.plan.sent))
        self._wake(up)

    def _head_timer(self, req: _Req, tag: tuple[int, int]) -> None:
        """No response head from a batching server within the read (or first-token) timeout or the
        deadline."""
        if req.gen != tag[0] or req.plan.sent != tag[1] or req.state != _UPSTREAM or req.t_first >= 0:
            return
        now = self.clock.t
        head_t = req.up_t0 + req.head_limit_s
        # The request's own deadline first: CANCELLED (outcome.py), else the deployment's timeout.
        req.up_kind = _DEADLINE if req.limit_t == req.deadline and now < head_t else _TIMEOUT
        if req.up_kind == _DEADLINE or req.limit_t < head_t:
            req.ttft_cut = False
        self._upstream_done(req, tag)

    def _cut(self, req: _Req, tag: tuple[int, int]) -> None:
        """A batching server's stream runs into the request's deadline or the total timeout."""
        if req.gen != tag[0] or req.plan.sent != tag[1] or req.state != _UPSTREAM:
            return
        req.cut = True
        req.t_end = self.clock.t
        self._stream_end(req, tag)

    def _release_upstream(self, req: _Req) -> None:
        """The attempt left the upstream (done, failed, or its client went away)."""
        up = req.up
        if up is not None:
            req.up = None
            up.server.finish(self.clock.t, req.rid)
            if up.reqs:
                if up.reqs.pop(req.rid, None) is not None:
                    self._wake(up)  # an abort frees a slot for the next in the queue

    def _schedule_event(self, event: Any) -> None:
        kind = event.kind
        if kind == "invalid_key_flood":
            return  # FloodArrivals
        at = event.at_s + (event.cold_start_s if kind == "capacity_added" else 0.0)
        self._push(at, self._apply_event, event, None)

    def _apply_event(self, event: Any, _: Any) -> None:
        up = self.ups[event.deployment]
        kind = event.kind
        if up.reqs:
            up.server.advance(self.clock.t)  # what ran so far ran at the old speed
        if kind == "deployment_down":
            up.down = True
        elif kind == "deployment_slow":
            up.server.set_factor(event.factor)
        elif kind == "deployment_recover":
            up.down = False
            up.server.set_factor(1.0)
        elif kind == "capacity_added":
            up.server.grow(event.max_in_flight)
        self._wake(up)
