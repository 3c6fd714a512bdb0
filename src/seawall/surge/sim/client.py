"""The users and their SDK clients: arrivals, per-attempt timeouts, retries and giving up.

The client model is the OpenAI SDK's (``ClientBehaviour``): a per-attempt timeout sent as
``x-stainless-timeout``, retries with its backoff or the server's ``retry-after-ms``, and users who
give up after ``abandon_after_s``. The paths most requests take (a refusal, a client retry) are
written straight through rather than through small helpers: they run millions of times.
"""

from __future__ import annotations

import math
from typing import Any

from seawall.algorithms.outcome import Outcome
from seawall.core.errors import advertised_retry_after_s, retry_after_ms
from seawall.surge.sim.state import _BACKOFF, _CPU, _IDLE, _QUEUED, _UPSTREAM, SimState, _Req

__all__ = ["ClientSide"]

_SDK_MAX_RETRY_AFTER_S = 120.0  # openai._constants.MAX_RETRY_AFTER_DELAY


class ClientSide(SimState):
    def _arrive(self, ti: int, _: Any) -> None:
        now = self.clock.t
        src = self._sources[ti]
        prompt, max_tokens, completion, stream, model = src.draw()
        ctx = self._tiers[ti]
        req = _Req(ctx, float(prompt + (max_tokens or 256)), stream, completion, max_tokens, model, now, prompt)
        self.pending += 1
        self.user_requests += 1
        rec = self.recorder
        b = int(now * rec.inv_bucket)
        ctx.arrivals[b if b < rec.n else rec.n - 1] += 1
        nxt = src.arrivals.next()
        if nxt < math.inf:
            self._push(nxt, self._arrive, ti, None)
        self._send(req, None)

    def _send(self, req: _Req, _: Any) -> None:
        """The client sends an attempt (the first, or a retry) to a replica chosen by the balancer."""
        now = self.clock.t
        req.gen = gen = req.gen + 1
        ctx = req.ctx
        cdl = now + ctx.timeout_s
        abandon_s = ctx.abandon_s
        if abandon_s is not None and req.first_t + abandon_s < cdl:
            cdl = req.first_t + abandon_s
            req.abandon = True
        else:
            req.abandon = False
        req.cdl = cdl
        req.cancel_armed = False
        replica = self.replicas[int(self._lb() * self.n_replicas)]
        req.replica = replica
        wait_s = cdl - now
        if self._max_timeout_s < wait_s:
            wait_s = self._max_timeout_s
        req.deadline = now + wait_s  # the client's x-stainless-timeout
        self.requests += 1
        rec = self.recorder
        b = int(now * rec.inv_bucket)
        ctx.offered[b if b < rec.n else rec.n - 1] += 1
        free = replica.cpu_free_s
        if free > now:
            replica.cpu_free_s = free + self._cpu_rejected
            req.state = _CPU
            self._at(req, free, self._process, gen)
        else:
            replica.cpu_free_s = now + self._cpu_rejected
            self._process(req, gen)

    def _succeed(self, req: _Req) -> None:
        """The gateway answered 200: the user's request is done."""
        now = self.clock.t
        req.state = _IDLE
        req.gen += 1  # nothing more happens to this attempt
        rec = self.recorder
        n = rec.n
        ctx = req.ctx
        b = int(now * rec.inv_bucket)
        ctx.ok[b if b < n else n - 1] += 1
        t_recv = now + self._client_rtt
        latency_s = t_recv - req.first_t
        # Recorder.user_end, inlined
        b = int(t_recv * rec.inv_bucket)
        if b >= n:
            b = n - 1
        ctx.user_ok[b] += 1
        ctx.latency.add(latency_s)
        ctx.ttft.add((req.t_first if req.t_first >= 0 else now) + self._client_rtt - req.first_t)
        ctx.coarse[b].add(latency_s)
        if t_recv > rec.end_s:
            rec.end_s = t_recv
        self.pending -= 1

    def _fail(self, req: _Req, status: int, reason: str, retry_after: float | None) -> None:
        """The gateway answered an error: the path of every shed request. The client may retry."""
        now = self.clock.t
        req.state = _IDLE
        req.gen += 1  # nothing more happens to this attempt
        if reason == "upstream_429":
            outcome = "upstream_429"
        elif status == 503 or status == 429:
            outcome = "shed"
        else:
            outcome = "error"
        # Recorder.attempt_end, inlined
        rec = self.recorder
        b = int(now * rec.inv_bucket)
        if b >= rec.n:
            b = rec.n - 1
        ctx = req.ctx
        ctx.outcomes[outcome][b] += 1
        reasons = ctx.reasons
        reasons[reason] = reasons.get(reason, 0) + 1
        series = rec.reason_series.get(reason)
        if series is None:
            series = rec.reason_series[reason] = [0] * rec.n
        series[b] += 1
        # What the server edge puts in retry-after-ms (edges/server.py error_headers)
        retry_after = advertised_retry_after_s(status, retry_after)
        if retry_after is not None:
            retry_after = retry_after_ms(retry_after) / 1000.0
        self._client_retry_or_fail(req, now + self._client_rtt, retry_after, reason,
                                   status >= 500 or status == 408 or status == 409 or status == 429)

    def _client_retry_or_fail(self, req: _Req, t_recv: float, retry_after: float | None, reason: str,
                              retryable: bool) -> None:
        ctx = req.ctx
        if ctx.no_retries or req.retries >= ctx.max_retries or not retryable:
            self._user_failed(req, t_recv, reason)
            return
        if ctx.honour_retry_after and retry_after is not None and 0 < retry_after <= _SDK_MAX_RETRY_AFTER_S:
            delay = retry_after
        else:
            delay = ctx.backoff_initial_s * 2.0 ** req.retries
            if ctx.backoff_max_s < delay:
                delay = ctx.backoff_max_s
            delay *= 1.0 - 0.25 * self._client_random()
        abandon_s = ctx.abandon_s
        if abandon_s is not None and t_recv + delay - req.first_t >= abandon_s:
            self._user_failed(req, t_recv, "abandoned")
            return
        req.retries += 1
        self._push(t_recv + delay, self._send, req, None)

    def _user_failed(self, req: _Req, t_s: float, reason: str) -> None:
        """Recorder.user_end for a failure, inlined."""
        rec = self.recorder
        b = int(t_s * rec.inv_bucket)
        ctx = req.ctx
        ctx.user_fail[b if b < rec.n else rec.n - 1] += 1
        reasons = ctx.user_fail_reasons
        reasons[reason] = reasons.get(reason, 0) + 1
        if t_s > rec.end_s:
            rec.end_s = t_s
        self.pending -= 1

    def _client_timeout(self, req: _Req, gen: int) -> None:
        """The client's per-attempt timeout (or the user's patience) ran out: it disconnects."""
        if req.gen != gen or req.state == _IDLE:
            return
        now = self.clock.t
        state = req.state
        if state == _QUEUED:
            req.waiter.cancel()
        elif state == _UPSTREAM:
            self._release_upstream(req)
            req.dep.end(now, req.permit, req.units, Outcome.CANCELLED)
            self.recorder.router(now, req.plan.round_sent + 1)
            if req.gate is not None:
                # An abandoned request gives no latency sample (AdmissionPolicy._release_after's
                # finally, for a stream the client left).
                req.gate.release(req.ticket, rtt_s=None, dropped=False)
        elif state == _BACKOFF:
            self.recorder.router(now, req.plan.round_sent)
            if req.gate is not None:
                req.gate.release(req.ticket, rtt_s=None, dropped=False)
        # _CPU: nothing held yet. _WOKEN: the stale continuation gives its ticket back.
        req.state = _IDLE
        req.gen += 1
        reason = "abandoned" if req.abandon else "client_timeout"
        self.recorder.attempt_end(now, req.tier, "cancelled", reason)
        if req.abandon:
            self._user_failed(req, now, "abandoned")
            return
        self._client_retry_or_fail(req, now, None, reason, retryable=True)
