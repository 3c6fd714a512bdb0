"""Where quota decisions are made: Redis when it answers in time, local counters when it does not.

Fail static. Every Redis call has a tight timeout (``timeout_s``, default 50 ms) and goes through a
circuit breaker (:class:`seawall.algorithms.breaker.CircuitBreaker`). When Redis is slow,
unreachable or the breaker is open, the decision is made by in-process counters at 1/N of the
global quota (:meth:`seawall.algorithms.quota.QuotaLimits.share`), N being the configured
``replicas`` (times the worker processes of this replica) or, when not configured, the number of
replicas that heartbeat into Redis (last seen). A request therefore never fails because Redis
failed, and the replicas together still hold roughly the global quota. A background heartbeat
doubles as the breaker's probe, so the service returns to Redis by itself, traffic or not.

Releases (the end of a request) must reach Redis before the client can send its next request,
or a client at its concurrency limit would be refused by its own previous request: a ticket that
holds a concurrency lease is settled inline. Token reconciliation alone is not urgent: deltas are
summed per scope set and sent every ``SETTLE_BATCH_S`` (50 ms) in one call per scope set, which
halves the Redis calls per request (measured in bench/quota.py). A settle that fails is kept
(bounded) and retried after the next good heartbeat; leases also expire by themselves at the
request's deadline plus a margin.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from seawall.algorithms.breaker import CircuitBreaker, Permit
from seawall.algorithms.outcome import Outcome
from seawall.algorithms.quota import DAY_S, LocalQuota, QuotaDecision, QuotaScope
from seawall.edges.stores.redis_quota import RedisQuotaStore
from seawall.env import Clock

__all__ = ["QuotaService", "QuotaTicket", "redis_breaker"]

log = logging.getLogger("seawall.quota")

LEASE_MARGIN_S = 5.0
MAX_PENDING_SETTLES = 10_000
SETTLE_BATCH_S = 0.05


@dataclass(slots=True)
class QuotaTicket:
    """What was charged, where, so that the end of the request settles the same counters."""

    decision: QuotaDecision
    scopes: Sequence[QuotaScope]
    tokens: int
    acquired_s: float  # unix seconds (Redis's clock for remote tickets)
    lease_id: str | None = None  # set for tickets charged on Redis

    @property
    def holds_lease(self) -> bool:
        return any(s.limits.concurrent_requests is not None for s in self.scopes)


def redis_breaker() -> CircuitBreaker:
    """Opens after 3 failures in a row (or half the calls failing over 5 s); probes after 0.5 s,
    backing off to 5 s; two good probes close it."""
    return CircuitBreaker(failure_rate_threshold=0.5, min_requests=20, consecutive_failures_to_open=3,
                          window_s=5.0, open_s=0.5, max_open_s=5.0, half_open_max_probes=1,
                          probe_successes_to_close=2)


class QuotaService:
    def __init__(
        self,
        *,
        clock: Clock,
        redis: RedisQuotaStore | None = None,
        timeout_s: float = 0.05,
        replicas: int | None = None,
        processes: int = 1,
        heartbeat_interval_s: float = 1.0,
        breaker: CircuitBreaker | None = None,
        local: LocalQuota | None = None,
    ) -> None:
        self.clock = clock
        self.redis = redis
        self.timeout_s = timeout_s
        self.configured_replicas = replicas
        self.processes = max(1, processes)
        self.heartbeat_interval_s = heartbeat_interval_s
        self.breaker = breaker or redis_breaker()
        self.local = local or LocalQuota()
        self.replica_id = f"{os.getpid()}-{os.urandom(4).hex()}"
        self.replicas_seen = 0
        self.local_decisions = 0
        self.remote_decisions = 0
        self.last_error: str | None = None
        self._lease_seq = itertools.count(1)
        self._pending: deque[tuple[tuple[QuotaScope, ...], int, str, float]] = deque(maxlen=MAX_PENDING_SETTLES)
        self._deltas: dict[tuple[tuple[QuotaScope, ...], int], int] = {}  # (scopes, UTC day) -> tokens
        self._flush_scheduled = False
        self._tasks: set[asyncio.Task[None]] = set()
        self._heartbeat_task: asyncio.Task[None] | None = None
        self._shares: dict[tuple[tuple[QuotaScope, ...], int], tuple[QuotaScope, ...]] = {}

    # -- deciding -----------------------------------------------------------------------------
    def divisor(self) -> int:
        """N for the fail-static share: configured replicas x processes, else replicas seen alive."""
        if self.configured_replicas is not None:
            return self.configured_replicas * self.processes
        if self.redis is not None and self.replicas_seen > 0:
            return self.replicas_seen
        return self.processes

    async def acquire(self, scopes: Sequence[QuotaScope], tokens: int, lease_ttl_s: float) -> QuotaTicket:
        if self.redis is not None:
            permit = self.breaker.allow(self.clock.now())
            if permit is not None:
                lease_id = f"{self.replica_id}-{next(self._lease_seq):x}"
                try:
                    async with asyncio.timeout(self.timeout_s):
                        decision, at_s = await self.redis.acquire(
                            scopes, tokens, lease_id, min(lease_ttl_s, 3600.0) + LEASE_MARGIN_S)
                except asyncio.CancelledError:
                    self.breaker.on_result(self.clock.now(), permit, Outcome.CANCELLED)
                    raise
                except Exception as exc:  # timeout, connection, script: all mean "decide locally"
                    self._failed(permit, exc)
                    if any(s.limits.concurrent_requests is not None for s in scopes):
                        # The script may have run after all: give the lease back when Redis is back.
                        self._pending.append((tuple(scopes), 0, lease_id, 0.0))
                else:
                    self._succeeded(permit)
                    self.remote_decisions += 1
                    return QuotaTicket(decision, scopes, tokens, at_s, lease_id)
        self.local_decisions += 1
        shared = self._share(scopes)
        wall = self.clock.wall()
        return QuotaTicket(self.local.acquire(shared, tokens, self.clock.now(), wall), shared, tokens, wall)

    def _share(self, scopes: Sequence[QuotaScope]) -> Sequence[QuotaScope]:
        n = self.divisor() if self.redis is not None else self.processes * (self.configured_replicas or 1)
        if n <= 1:
            return scopes
        key = (tuple(scopes), n)
        shared = self._shares.get(key)
        if shared is None:
            shared = tuple(QuotaScope(s.kind, s.id, s.tenant, s.limits.share(n)) for s in scopes)
            if len(self._shares) > 10_000:
                self._shares.clear()
            self._shares[key] = shared
        return shared

    async def settle(self, ticket: QuotaTicket, actual_tokens: int | None) -> None:
        """The request ended; ``actual_tokens`` is its real usage (``None``: unknown, keep the estimate)."""
        if not ticket.decision.allowed:
            return
        delta = 0 if actual_tokens is None else actual_tokens - ticket.tokens
        if ticket.lease_id is None:
            self.local.settle(ticket.scopes, delta, self.clock.now(), self.clock.wall(), ticket.acquired_s)
            return
        if ticket.holds_lease:
            await self._settle_remote(tuple(ticket.scopes), delta, ticket.lease_id, ticket.acquired_s)
        elif delta != 0:
            self._add_delta(ticket, delta)

    def settle_later(self, ticket: QuotaTicket, actual_tokens: int | None) -> None:
        """Settle without waiting (error and cancellation paths)."""
        if not ticket.decision.allowed:
            return
        delta = 0 if actual_tokens is None else actual_tokens - ticket.tokens
        if ticket.lease_id is None:
            self.local.settle(ticket.scopes, delta, self.clock.now(), self.clock.wall(), ticket.acquired_s)
        elif ticket.holds_lease:
            self._spawn(self._settle_remote(tuple(ticket.scopes), delta, ticket.lease_id, ticket.acquired_s))
        elif delta != 0:
            self._add_delta(ticket, delta)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _add_delta(self, ticket: QuotaTicket, delta: int) -> None:
        key = (tuple(ticket.scopes), int(ticket.acquired_s // DAY_S))
        if key not in self._deltas and len(self._deltas) >= MAX_PENDING_SETTLES:
            return  # bounded: an unreconciled estimate only errs on the strict side
        self._deltas[key] = self._deltas.get(key, 0) + delta
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_later(SETTLE_BATCH_S, self._start_flush)

    def _start_flush(self) -> None:
        self._flush_scheduled = False
        self._spawn(self._flush_deltas())

    async def _flush_deltas(self) -> None:
        deltas, self._deltas = self._deltas, {}
        for (scopes, day), delta in deltas.items():
            if delta != 0:
                await self._settle_remote(scopes, delta, "", day * DAY_S)

    async def _settle_remote(self, scopes: tuple[QuotaScope, ...], delta: int, lease_id: str,
                             acquired_s: float) -> None:
        assert self.redis is not None
        item = (scopes, delta, lease_id, acquired_s)
        permit = self.breaker.allow(self.clock.now())
        if permit is None:
            self._pending.append(item)
            return
        try:
            async with asyncio.timeout(self.timeout_s):
                await self.redis.settle(scopes, delta, lease_id, acquired_s)
        except asyncio.CancelledError:
            self.breaker.on_result(self.clock.now(), permit, Outcome.CANCELLED)
            self._pending.append(item)
            raise
        except Exception as exc:
            self._failed(permit, exc)
            self._pending.append(item)
        else:
            self._succeeded(permit)

    def _succeeded(self, permit: Permit) -> None:
        self.breaker.on_result(self.clock.now(), permit, Outcome.SUCCESS)
        if self.last_error is not None:
            log.info("quota store reachable again; deciding on Redis")
            self.last_error = None

    def _failed(self, permit: Permit, exc: BaseException) -> None:
        self.breaker.on_result(self.clock.now(), permit, Outcome.FAILURE)
        if self.last_error is None:
            log.warning("quota store failed, deciding locally at 1/%d of each quota: %r", self.divisor(), exc)
        self.last_error = f"{type(exc).__name__}: {exc}"[:200]

    # -- background ---------------------------------------------------------------------------
    async def beat(self) -> bool:
        """One heartbeat through the breaker (it is also the breaker's probe); True if Redis answered."""
        if self.redis is None:
            return False
        permit = self.breaker.allow(self.clock.now())
        if permit is None:
            return False
        try:
            async with asyncio.timeout(max(self.timeout_s, 0.25)):
                self.replicas_seen = await self.redis.heartbeat(self.replica_id, 3 * self.heartbeat_interval_s)
        except Exception as exc:
            self._failed(permit, exc)
            return False
        self._succeeded(permit)
        while self._pending:
            await self._settle_remote(*self._pending.popleft())
            if self.last_error is not None:
                break
        return True

    async def _run(self) -> None:
        while True:
            try:
                await self.beat()
            except asyncio.CancelledError:
                raise
            except Exception:  # never let the heartbeat die
                log.exception("quota heartbeat failed")
            await self.clock.sleep(self.heartbeat_interval_s)

    def start(self) -> None:
        if self.redis is not None and self._heartbeat_task is None:
            self._heartbeat_task = asyncio.get_running_loop().create_task(self._run(), name="quota-heartbeat")

    async def stop(self) -> None:
        if self._heartbeat_task is not None:
            self._heartbeat_task.cancel()
            try:
                await self._heartbeat_task
            except asyncio.CancelledError:
                pass
            self._heartbeat_task = None
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=1.0)
        if self.redis is not None:
            try:
                async with asyncio.timeout(0.5):
                    await self.redis.leave(self.replica_id)
            except Exception:
                pass
            await self.redis.close()

    def state(self) -> dict[str, object]:
        now = self.clock.now()
        if self.redis is None:
            return {"status": "ok", "mode": "local", "replicas": self.divisor()}
        closed = self.breaker.state(now).value == "closed"
        return {
            "status": "ok" if closed and self.last_error is None else "degraded",
            "mode": "redis" if closed and self.last_error is None else "local",
            "breaker": self.breaker.state(now).value,
            "replicas": self.divisor(),
            "local_decisions": self.local_decisions,
            "remote_decisions": self.remote_decisions,
            "pending_settles": len(self._pending),
            "last_error": self.last_error,
        }
