"""The gateway replicas: the simulator's driver of the gateway's own decisions.

Auth's failure throttle for the invalid-key flood (``charge_failure``), the admission gate's events
(``offer``/``expire``/``release``), the request's retry plan (``SendPlan``: ``next``,
``on_outcome``, ``on_refused``, ``requeue``), each deployment's attempt events
(``begin``/``on_head``/``end``), the upstream edge's own errors classified by ``outcome_of``, and
the metrics poller's ``report_load``: this file schedules what asyncio would schedule and performs
what the policies would perform, and decides nothing itself (``tests/unit/surge/test_no_mirror.py``).
The replica's event loop is modelled as one CPU (``cpu_free_s``); its backlog is the loop lag the
admission policy sheds on.
"""

from __future__ import annotations

from typing import Any

from seawall.algorithms.outcome import Outcome
from seawall.algorithms.plan import Backoff, Send, SendPlan
from seawall.core.errors import GatewayError
from seawall.edges.upstreams.base import status_error, timed_out
from seawall.mock.servers import Accepted
from seawall.policies.admission import latency_sample
from seawall.policies.auth import charge_failure
from seawall.policies.deployment import outcome_of, ttft_timeout
from seawall.policies.gate import AdmissionGate, Ticket
from seawall.policies.route import no_deployment
from seawall.policies.upstream_load import UpstreamLoad, report_load
from seawall.surge.replica import Replica, Waiter
from seawall.surge.sim.state import (
    _BACKOFF,
    _DEADLINE,
    _OK,
    _QUEUED,
    _R400,
    _R429,
    _R500,
    _R503,
    _TIMEOUT,
    _UPSTREAM,
    _WOKEN,
    SimState,
    _Req,
)

__all__ = ["GatewaySide"]


class GatewaySide(SimState):
    def _flood(self, address: int, _: Any) -> None:
        now = self.clock.t
        nxt = self._floods.next()
        if nxt is not None:
            self._push(nxt[0], self._flood, nxt[1], None)
        replica = self.replicas[int(self._lb() * self.n_replicas)]
        free = replica.cpu_free_s
        replica.cpu_free_s = (free if free > now else now) + self._cpu_auth
        self.requests += 1
        rec = self.recorder
        b = int(now * rec.inv_bucket)
        if b >= rec.n:
            b = rec.n - 1
        tr = rec.tiers[-1]  # INVALID_TIER
        tr.arrivals[b] += 1
        tr.offered[b] += 1
        key = self._floods.keys[address]
        throttle = replica.auth_throttle
        # AuthPolicy.authenticate for a well-formed but unknown key
        reason = "invalid_api_key" if charge_failure(throttle, key, now) else "auth_throttle"
        # Recorder.attempt_end, inlined
        tr.outcomes["rejected_auth"][b] += 1
        tr.reasons[reason] = tr.reasons.get(reason, 0) + 1
        series = rec.reason_series.get(reason)
        if series is None:
            series = rec.reason_series[reason] = [0] * rec.n
        series[b] += 1

    def _process(self, req: _Req, gen: int) -> None:
        """The replica's event loop gets to the request: auth passed (a valid key), admission."""
        if req.gen != gen:
            return
        replica = req.replica
        admission = replica.admission
        req.plan = None
        req.ticket = None
        req.t_first = -1.0
        req.gate = None
        if admission is not None:
            try:
                admission._early(req.crit)
            except GatewayError as err:
                self._fail(req, err.status, err.reason, err.retry_after_s)
                return
            gate = replica.gates.get(req.model)
            if gate is not None:
                req.gate = gate
                self._offer(req)
                return
        self._start(req, None)

    def _offer(self, req: _Req) -> None:
        gate: AdmissionGate = req.gate
        waiter = Waiter(self._woken, req)
        try:
            offered = gate.offer(req.crit, req.units, req.deadline, waiter, req.plan is not None)
        except GatewayError as err:
            self._fail(req, err.status, err.reason, err.retry_after_s)
            return
        if offered.__class__ is Ticket:
            self._start(req, offered)
            return
        req.state = _QUEUED
        req.waiter = waiter
        self._at(req, offered.deadline_s, self._queue_timer, req.gen)  # type: ignore[union-attr]

    def _queue_timer(self, req: _Req, gen: int) -> None:
        if req.gen == gen and req.state == _QUEUED:
            rejection = req.gate.expire(req.waiter, req.crit, req.units)
            if rejection is not None:
                self._woken(req, None, rejection)

    def _woken(self, req: _Req, ticket: Any, exc: Exception | None) -> None:
        """The gate started (or refused) a waiting request: continue it, as asyncio would, next."""
        if req.state == _QUEUED:
            req.state = _WOKEN
        self._push(self.clock.t, self._resume, req, (req.gen, ticket, exc))

    def _resume(self, req: _Req, arg: tuple[int, Any, Exception | None]) -> None:
        gen, ticket, exc = arg
        if req.gen != gen:
            if ticket is not None:  # started as its caller went away: acquire() gives it back
                req.gate.release(ticket, rtt_s=None, dropped=False)
            return
        if exc is not None:
            err = exc if isinstance(exc, GatewayError) else GatewayError(str(exc))
            self._fail(req, err.status, err.reason, err.retry_after_s)
            return
        self._start(req, ticket)

    def _start(self, req: _Req, ticket: Any) -> None:
        now = self.clock.t
        req.ticket = ticket
        req.started = now
        req.replica.cpu_free_s += self._cpu_admitted
        rec = self.recorder
        b = int(now * rec.inv_bucket)
        req.ctx.admitted[b if b < rec.n else rec.n - 1] += 1
        self._route(req)

    def _route(self, req: _Req) -> None:
        """``Router.__call__`` up to its loop: one round of the request's plan."""
        router = req.replica.router
        plan = req.plan
        if plan is None:
            plan = req.plan = SendPlan(router.retry, router.budget, router.rng.random, deadline_s=req.deadline,
                                       client_retries=req.retries)
        group = router.groups[req.model]
        req.last_err = None
        if not router.start_round(group, plan, self.clock.t):
            err = no_deployment(group, "all_ejected")
            self._router_failed(req, err, err.retry_after_s)
            return
        self._router_loop(req, None)

    def _router_loop(self, req: _Req, resume: Any) -> None:
        """``Router.__call__``'s loop: the plan's next step, until a send is under way or it gives up."""
        if resume is not None and self._attempt(req, resume):
            return
        plan: SendPlan[Any] = req.plan
        while True:
            step = plan.next(self.clock.t)
            cls = step.__class__
            if cls is Send:
                if self._attempt(req, step.deployment):  # type: ignore[union-attr]
                    return
                continue
            if cls is Backoff:
                req.state = _BACKOFF
                self._at(req, step.until_s, self._backoff_done, (req.gen, step.deployment))  # type: ignore[union-attr]
                return
            break
        err = req.last_err
        if err is None:
            err = no_deployment(req.replica.router.groups[req.model], "no_deployment")
            req.last_retry_after = err.retry_after_s
        self._router_failed(req, err, req.last_retry_after)

    def _backoff_done(self, req: _Req, arg: tuple[int, Any]) -> None:
        gen, dep = arg
        if req.gen == gen and req.state == _BACKOFF:
            self._router_loop(req, dep)

    def _attempt(self, req: _Req, dep: Any) -> bool:
        """``DeploymentHandle.attempt``: False when the breaker refused (nothing was sent)."""
        now = self.clock.t
        permit = dep.begin(now, req.units)
        if permit is None:
            req.plan.on_refused()
            req.last_err = err = dep.refusal(now, req.units)
            req.last_retry_after = err.retry_after_s
            return False
        req.dep = dep
        req.permit = permit
        req.up_t0 = now
        req.state = _UPSTREAM
        up = self.ups[dep.name]
        rtt = self._net_rtt
        tag = (req.gen, req.plan.sent)  # this attempt's events (a failover keeps the generation)
        req.up = None
        if up.down:
            req.up_kind = _R500
            self._at(req, now + rtt, self._upstream_done, tag)
            return True
        server = up.server
        admitted = server.submit(now, req.prompt, req.n_out, reserve_tokens=int(req.units), key=up.name,
                                 sample=up.random() if up.hosted else 1.0)
        if admitted.__class__ is not Accepted:
            req.up_kind = _R429 if admitted.status == 429 else _R503 if admitted.overloaded else _R400  # type: ignore[union-attr]
            req.hint = admitted.retry_after_s  # type: ignore[union-attr]
            self._at(req, now + rtt, self._upstream_done, tag)
            return True
        req.rid = admitted.rid
        req.up = up
        limit_t = now + up.total_s
        if req.deadline < limit_t:
            limit_t = req.deadline
        req.limit_t = limit_t
        if up.errors and up.random() < up.errors:
            req.up_kind = _R500
            t = now + rtt + up.first_s * server.factor
            if limit_t < t:
                t = limit_t
            self._at(req, t if t > now else now, self._upstream_done, tag)
            return True
        # The response head must come within the read timeout, and a stream's first token within the
        # deployment's first-token timeout (DeploymentHandle.first_token_timeout_s).
        head_limit_s = up.read_s
        ttft_s = dep.first_token_timeout_s(req.stream)
        req.ttft_cut = ttft_s is not None and ttft_s < head_limit_s
        if req.ttft_cut:
            head_limit_s = ttft_s
        req.head_limit_s = head_limit_s
        first_s = admitted.first_s
        req.up_kind = _OK
        if first_s is None:
            # A batching server decides when the tokens come: its milestones drive the attempt
            # (_up_wake), and the head timeout is a timer of its own.
            up.reqs[req.rid] = req
            req.cut = False
            t = now + head_limit_s
            self._at(req, limit_t if limit_t < t else t, self._head_timer, tag)
            self._wake(up)
            return True
        n = req.n_out
        total_s = first_s + (n - 1 if n > 1 else 0) * admitted.interval_s
        head_s = first_s if req.stream else total_s  # when the response head (first byte) arrives
        if head_s > head_limit_s or now + rtt + head_s > limit_t:
            # the deployment's own timeouts, or the request's deadline first (UpstreamClient._timed_out)
            t = now + head_limit_s
            if limit_t < t:
                t = limit_t
            req.up_kind = _TIMEOUT if head_s > head_limit_s or req.deadline > now + up.total_s else _DEADLINE
            if req.up_kind == _DEADLINE or t < now + head_limit_s:
                req.ttft_cut = False  # the deadline or the total timeout came first
            self._at(req, t if t > now else now, self._upstream_done, tag)
            return True
        req.ttft_cut = False
        t_end = now + rtt + total_s
        req.cut = limit_t < t_end  # a stream that runs into its deadline or total timeout breaks mid-way
        req.t_end = limit_t if req.cut else t_end
        if req.stream:
            self._at(req, now + rtt + first_s, self._first_byte, tag)
        else:
            self._at(req, req.t_end, self._upstream_done, tag)
        return True

    def _first_byte(self, req: _Req, tag: tuple[int, int]) -> None:
        """A stream's first event: the router returns the response (breaker result at its end)."""
        if req.gen != tag[0] or req.plan.sent != tag[1] or req.state != _UPSTREAM or req.t_first >= 0:
            return
        now = self.clock.t
        up = req.up
        if up is not None:
            req.dep.on_head(now, now - req.up_t0, up.headroom(now), up.rate_limits(now))
        else:
            req.dep.on_head(now, now - req.up_t0, None)
        req.t_first = now
        if up is not None and req.rid in up.reqs:
            self._at(req, req.limit_t, self._cut, tag)  # batching: DONE comes as a milestone
        else:
            self._at(req, req.t_end, self._stream_end, tag)

    def _stream_end(self, req: _Req, tag: tuple[int, int]) -> None:
        if req.gen != tag[0] or req.plan.sent != tag[1] or req.state != _UPSTREAM:
            return
        self._release_upstream(req)
        now = self.clock.t
        broke = req.cut
        # A break at the request's own deadline tells nothing about the deployment (outcome.py).
        outcome = (Outcome.SUCCESS if not broke else Outcome.CANCELLED if req.t_end >= req.deadline
                   else Outcome.FAILURE)
        req.dep.end(now, req.permit, req.units, outcome)
        req.plan.on_outcome(req.dep, Outcome.SUCCESS)  # the router returned at the first byte
        if req.gate is not None:
            req.gate.release(req.ticket, rtt_s=None if broke else self._sample(req, now), dropped=False)
        self._router_done(now, req.plan.round_sent)
        # after the first byte nothing is retried: the stream ends with an error event
        if broke:
            self._fail(req, 502, "upstream_timeout", None)
        else:
            self._succeed(req)

    def _sample(self, req: _Req, now: float) -> float | None:
        """The admission policy's latency sample (``latency_sample``) for a finished request."""
        lag = req.replica.cpu_free_s - now  # Replica.loop_lag_s
        return latency_sample(req.started, now, req.n_out, lag if lag > 0.0 else 0.0)

    def _router_done(self, now: float, attempts: int) -> None:
        """Recorder.router, inlined: one request left the router after ``attempts`` attempts."""
        rec = self.recorder
        b = int(now * rec.inv_bucket)
        if b >= rec.n:
            b = rec.n - 1
        rec.gateway_requests[b] += 1
        rec.upstream_attempts[b] += attempts

    def _upstream_done(self, req: _Req, tag: tuple[int, int]) -> None:
        if req.gen != tag[0] or req.plan.sent != tag[1] or req.state != _UPSTREAM:
            return
        now = self.clock.t
        dep = req.dep
        kind = req.up_kind
        up = req.up
        plan: SendPlan[Any] = req.plan
        if kind == _OK and up is not None:
            dep.on_head(now, now - req.up_t0, up.headroom(now), up.rate_limits(now))
            self._release_upstream(req)
            dep.end(now, req.permit, req.units, Outcome.SUCCESS)
            plan.on_outcome(dep, Outcome.SUCCESS)
            if req.gate is not None:
                req.gate.release(req.ticket, rtt_s=self._sample(req, now), dropped=False)
            self._router_done(now, plan.round_sent)
            self._succeed(req)
            return
        self._release_upstream(req)
        err, outcome = self._answer(dep.name, kind, req)
        retry_after = err.retry_after_s if kind != _R429 else (req.hint if req.hint is not None else 0.0)
        if kind == _R429:  # its rate-limit headers reach the pacer, as the edge's err.rate_limits do
            dep.end(now, req.permit, req.units, outcome, headroom=getattr(err, "headroom", None),
                    retry_after_s=retry_after, rate_limits=self.ups[dep.name].rate_limits(now, req.hint),
                    refused=True)
        else:
            dep.end(now, req.permit, req.units, outcome, headroom=getattr(err, "headroom", None),
                    retry_after_s=retry_after)
        req.last_err = err
        req.last_retry_after = retry_after
        if plan.on_outcome(dep, outcome) is not None:  # not worth another send (a client error)
            self._router_failed(req, err, retry_after)
            return
        req.state = _BACKOFF  # holds its ticket, nothing upstream: a client timeout now is as in a backoff
        self._router_loop(req, None)

    def _answer(self, name: str, kind: int, req: _Req) -> tuple[GatewayError, Outcome]:
        """The error the upstream edge raises for this answer (edges/upstreams/base.py) and its class
        by the one response classifier, exactly as the gateway's attempt() sees them. Built once per
        deployment and answer (a 429's retry hint, the one part that varies, travels beside it)."""
        ttft = kind == _TIMEOUT and req.ttft_cut
        key = (name, kind, ttft)
        found = self._answers.get(key)
        if found is None:
            err: GatewayError
            if kind == _R429:
                err = status_error(name, 429, {}, b"")
            elif kind == _R500:
                err = status_error(name, 500, {}, b"")
            elif kind == _R503:
                err = status_error(name, 503, {}, b"")
            elif kind == _R400:
                err = status_error(name, 400, {}, b"")
            elif kind == _TIMEOUT:
                err = (ttft_timeout(name, req.head_limit_s) if ttft
                       else timed_out(f"Upstream '{name}' timed out.", False))
            else:
                err = timed_out("", True)
            found = self._answers[key] = (err, outcome_of(err))
        return found

    def _router_failed(self, req: _Req, err: GatewayError, retry_after: float | None) -> None:
        """The router gave up: the admission policy's ``except GatewayError`` branch."""
        now = self.clock.t
        self._router_done(now, req.plan.round_sent)
        gate = req.gate
        if gate is not None:
            floor_s = req.replica.admission.on_round_failed(  # type: ignore[union-attr]
                gate, req.ticket, req.plan, outcome_of(err), err.error_kind)
            req.ticket = None
            if floor_s is None:
                self._offer(req)  # requeued: wait for real capacity, then another round
                return
            if floor_s > 0.0:
                retry_after = max(retry_after or 0.0, floor_s)
        self._fail(req, err.status, err.reason, retry_after)

    def _poll_metrics(self, replica: Replica, arg: tuple[str, str, float]) -> None:
        """A replica's metrics poller reads the server (edges/upstream_metrics.py): the same gauges
        the mock serves on /metrics, applied by the gateway's own report_load."""
        model, dep_name, interval_s = arg
        now = self.clock.t
        server = self.ups[dep_name].server
        server.advance(now)
        g = server.gauges()
        load = UpstreamLoad(g["running"], g["waiting"], g.get("kv_cache_usage"))
        report_load(replica.gates.get(model), replica.deployments[dep_name], load, now)
        if now < self.scenario.duration_s or self.pending > 0:
            self._push(now + interval_s, self._poll_metrics, replica, arg)
