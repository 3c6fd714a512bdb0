"""Where quota decisions are made: from leases in-process, on Redis near a limit, locally without it.

Leases (:mod:`seawall.algorithms.quota_lease`). While far from its limits a scope is decided
in-process from cells this replica holds, already charged on Redis; a request the snapshot shows
cannot fit is refused in-process too. Only when a lease runs short (near a limit, or at a burst) is
the request decided on Redis, atomically (one Lua call), and that call also tops the lease up. Every
``sync_interval_s`` (default 25 ms) one background call per tenant, all in one write, gives back
idle cells, charges debts and token reconciliations, tops leases up to a few intervals' worth of
demand and refreshes the snapshots. Redis hands out at most 1/(2N) of what is left, so near a limit
leases vanish and every request is checked on Redis, exactly as if there were no leases. A
concurrency limit is leased as a block of slots; near it, a request beyond the block holds a slot of
its own on Redis, and a slot is given back inline, before the response completes, whether its own or
the block's (a client at its concurrency limit must not be refused by its own previous request).

Fail static. Every Redis call has a tight timeout (``timeout_s``, default 50 ms) and goes through a
circuit breaker (:class:`seawall.algorithms.breaker.CircuitBreaker`). When Redis is slow,
unreachable or the breaker is open, the decision is made by in-process counters at 1/N of the
global quota (:meth:`seawall.algorithms.quota.QuotaLimits.share`), N being the configured
``replicas`` (times the worker processes of this replica) or, when not configured, the number of
replicas that heartbeat into Redis (last seen). Those counters start from this replica's share of
the last snapshot seen from Redis (:meth:`LeaseBook.seed`), not from zero: an outage does not hand
out a day's token budget again; tokens spent today during the outage are charged to Redis when it
returns. A request therefore never fails because Redis failed, and the replicas together still hold
roughly the global quota. A background heartbeat doubles as the breaker's probe, so the service
returns to Redis by itself, traffic or not. A release that fails is kept (bounded) and retried after
the next good heartbeat; leases also expire by themselves at the request's deadline plus a margin.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
from collections import deque
from collections.abc import Sequence
from typing import Any

from seawall.algorithms.breaker import CircuitBreaker, Permit
from seawall.algorithms.outcome import Outcome
from seawall.algorithms.quota import LocalQuota, QuotaScope
from seawall.algorithms.quota_lease import LeaseBook, SyncOp
from seawall.edges.stores.redis_quota import RedisQuotaStore
from seawall.env import Clock
from seawall.policies.quota import Decided, QuotaTicket  # the interface the quota policy declares

__all__ = ["Decided", "QuotaService", "QuotaTicket", "redis_breaker"]

log = logging.getLogger("seawall.quota")

LEASE_MARGIN_S = 5.0
MAX_PENDING_SETTLES = 10_000
SYNC_INTERVAL_S = 0.025


def redis_breaker() -> CircuitBreaker:
    """Opens after 3 failures in a row (or half the calls failing over 5 s); probes after 0.5 s,
    backing off to 5 s; two good probes close it."""
    return CircuitBreaker(failure_rate_threshold=0.5, min_requests=20, consecutive_failures_to_open=3,
                          window_s=5.0, open_s=0.5, max_open_s=5.0, half_open_max_probes=1,
                          probe_successes_to_close=2)


class QuotaService:
    """``leases=False`` decides every request on Redis (the reference the benchmark compares with);
    token reconciliations are still sent in the background sync."""

    def __init__(
        self,
        *,
        clock: Clock,
        redis: RedisQuotaStore | None = None,
        timeout_s: float = 0.05,
        replicas: int | None = None,
        processes: int = 1,
        heartbeat_interval_s: float = 1.0,
        sync_interval_s: float = SYNC_INTERVAL_S,
        leases: bool = True,
        breaker: CircuitBreaker | None = None,
        local: LocalQuota | None = None,
        book: LeaseBook | None = None,
    ) -> None:
        self.clock = clock
        self.redis = redis
        self.timeout_s = timeout_s
        self.configured_replicas = replicas
        self.processes = max(1, processes)
        self.heartbeat_interval_s = heartbeat_interval_s
        self.sync_interval_s = sync_interval_s
        self.leases = leases
        self.breaker = breaker or redis_breaker()
        self.local = local or LocalQuota()
        self.book = book or LeaseBook()
        self.replica_id = f"{os.getpid()}-{os.urandom(4).hex()}"
        self.replicas_seen = 0
        self.counts = dict.fromkeys(("lease_decisions", "cached_refusals", "remote_decisions",
                                     "fallback_decisions", "syncs", "sync_failures"), 0)
        self.last_error: str | None = None
        self._outage = 0  # counts transitions to failing; fallback counters are seeded once per outage
        self._seeded: dict[str, int] = {}
        self._lease_seq = itertools.count(1)
        self._pending: deque[tuple[tuple[QuotaScope, ...], int, str, float]] = deque(maxlen=MAX_PENDING_SETTLES)
        self._tasks: set[asyncio.Task[None]] = set()
        self._background: list[asyncio.Task[None]] = []
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
            if self.leases and self.last_error is None:
                decision = self.book.decide(scopes, tokens, self.clock.now(), self.clock.wall())
                if decision is not None:
                    self.counts["lease_decisions" if decision.allowed else "cached_refusals"] += 1
                    return QuotaTicket(decision, scopes, tokens, self.clock.wall(), decided=Decided.LEASE)
            ticket = await self._acquire_remote(scopes, tokens, lease_ttl_s)
            if ticket is not None:
                return ticket
        return self._fallback(scopes, tokens)

    async def _acquire_remote(self, scopes: Sequence[QuotaScope], tokens: int, lease_ttl_s: float
                              ) -> QuotaTicket | None:
        assert self.redis is not None
        permit = self.breaker.allow(self.clock.now())
        if permit is None:
            return None
        concurrency = any(s.limits.concurrent_requests is not None for s in scopes)
        lease_id = f"{self.replica_id}-{next(self._lease_seq):x}" if concurrency else ""
        wants = self.book.wants(scopes, tokens) if self.leases else None
        try:
            async with asyncio.timeout(self.timeout_s):
                took = await self.redis.take(scopes, tokens, lease_id, min(lease_ttl_s, 3600.0) + LEASE_MARGIN_S,
                                             replicas=self.divisor(), wants=wants, owner=self.replica_id)
        except asyncio.CancelledError:
            self.breaker.on_result(self.clock.now(), permit, Outcome.CANCELLED)
            raise
        except Exception as exc:  # timeout, connection, script: all mean "decide locally"
            self._failed(permit, exc)
            if concurrency:  # the script may have run after all: give the lease back when Redis is back
                self._pending.append((tuple(scopes), 0, lease_id, 0.0))
            return None
        self._succeeded(permit)
        self.counts["remote_decisions"] += 1
        assert took.decision is not None
        self.book.answered(scopes, took.states, took.at_s, self.clock.now(), took.decision.allowed, tokens,
                           self.divisor())
        return QuotaTicket(took.decision, scopes, tokens, took.at_s, lease_id or None, Decided.REDIS)

    def _fallback(self, scopes: Sequence[QuotaScope], tokens: int) -> QuotaTicket:
        self.counts["fallback_decisions"] += 1
        shared = self._share(scopes)
        now, wall = self.clock.now(), self.clock.wall()
        if self.redis is not None:
            self._seed(scopes, shared, now, wall)
        decision = self.local.acquire(shared, tokens, now, wall)
        if decision.allowed and self.redis is not None:
            self.book.charge_day(scopes, tokens, wall, wall)
        return QuotaTicket(decision, scopes, tokens, wall, None, Decided.FALLBACK, shared)

    def _seed(self, scopes: Sequence[QuotaScope], shared: Sequence[QuotaScope], now: float, wall: float) -> None:
        """Once per outage and scope: start the fallback counters from the last snapshot."""
        for scope, part in zip(scopes, shared, strict=True):
            if self._seeded.get(scope.name) != self._outage:
                if len(self._seeded) > 100_000:
                    self._seeded.clear()
                self._seeded[scope.name] = self._outage
                self.local.seed(part, *self.book.seed(scope, self.divisor(), now, wall))

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

    # -- settling -----------------------------------------------------------------------------
    async def settle(self, ticket: QuotaTicket, actual_tokens: int | None) -> None:
        """The request ended; ``actual_tokens`` is its real usage (``None``: unknown, keep the estimate)."""
        if ticket.decision.allowed:
            delta = 0 if actual_tokens is None else actual_tokens - ticket.tokens
            if ticket.lease_id is not None:
                self.book.release(ticket.scopes, own=True)
                await self._settle_remote(tuple(ticket.scopes), delta, ticket.lease_id, ticket.acquired_s)
            else:
                tight = self._settle_here(ticket, delta)
                if tight:
                    await self._shrink(tight)

    def settle_later(self, ticket: QuotaTicket, actual_tokens: int | None) -> None:
        """Settle without waiting (error and cancellation paths)."""
        if ticket.decision.allowed:
            delta = 0 if actual_tokens is None else actual_tokens - ticket.tokens
            if ticket.lease_id is not None:
                self.book.release(ticket.scopes, own=True)
                self._spawn(self._settle_remote(tuple(ticket.scopes), delta, ticket.lease_id, ticket.acquired_s))
            else:
                tight = self._settle_here(ticket, delta)
                if tight:
                    self._spawn(self._shrink(tight))

    def _settle_here(self, ticket: QuotaTicket, delta: int) -> list[QuotaScope]:
        """Settle in-process; returns the scopes whose block of slots must shrink now."""
        if ticket.local_scopes is not None:
            wall = self.clock.wall()
            self.local.settle(ticket.local_scopes, delta, self.clock.now(), wall, ticket.acquired_s)
            if self.redis is not None:
                self.book.charge_day(ticket.scopes, delta, ticket.acquired_s, wall)
            return []
        if self.redis is None:
            return []
        self.book.settle(ticket.scopes, delta, ticket.acquired_s)  # sent with the next sync
        return self.book.release(ticket.scopes) if ticket.decided is Decided.LEASE else []

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

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

    # -- sync ---------------------------------------------------------------------------------
    async def sync(self, *, final: bool = False) -> bool:
        """One sync of every active lease (one call per tenant, one write); True if it happened.
        ``final``: give every lease back (shutting down)."""
        if self.redis is None or self.last_error is not None or not len(self.book):
            return False
        ops = self.book.plan(self.clock.wall(), lease=self.leases and not final)
        if not ops:
            return False
        ok = await self._send_ops(ops)
        self.counts["syncs" if ok else "sync_failures"] += 1
        return ok

    async def _shrink(self, scopes: list[QuotaScope]) -> None:
        """Near a concurrency limit: the slot a request freed goes back to Redis before its response
        completes (one call, as a request holding a slot of its own releases it)."""
        if self.redis is not None and self.last_error is None:
            await self._send_ops(self.book.shrink(scopes, self.clock.wall()))

    async def _send_ops(self, ops: list[SyncOp]) -> bool:
        assert self.redis is not None
        permit = self.breaker.allow(self.clock.now())
        if permit is None:
            for op in ops:
                self.book.failed(op)
            return False
        by_tenant: dict[str, list[SyncOp]] = {}
        for op in ops:
            by_tenant.setdefault(op.scope.tenant, []).append(op)
        batches = list(by_tenant.values())
        n = self.divisor()
        try:
            async with asyncio.timeout(self.timeout_s):
                replies = await self.redis.sync(batches, n, self.replica_id)
        except asyncio.CancelledError:
            for op in ops:
                self.book.failed(op)
            self.breaker.on_result(self.clock.now(), permit, Outcome.CANCELLED)
            raise
        except Exception as exc:
            for op in ops:
                self.book.failed(op)
            self._failed(permit, exc)
            return False
        self._succeeded(permit)
        now = self.clock.now()
        for batch, took in zip(batches, replies, strict=True):
            for op, state in zip(batch, took.states, strict=True):
                self.book.applied(op, state, took.at_s, now, n)
        return True

    def _succeeded(self, permit: Permit) -> None:
        self.breaker.on_result(self.clock.now(), permit, Outcome.SUCCESS)
        if self.last_error is not None:
            log.info("quota store reachable again; deciding on Redis")
            self.last_error = None

    def _failed(self, permit: Permit, exc: BaseException) -> None:
        self.breaker.on_result(self.clock.now(), permit, Outcome.FAILURE)
        if self.last_error is None:
            log.warning("quota store failed, deciding locally at 1/%d of each quota: %r", self.divisor(), exc)
            self._outage += 1
            self.book.drop_leases()
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

    async def _every(self, interval_s: float, step: Any, what: str) -> None:
        while True:
            try:
                await step()
            except asyncio.CancelledError:
                raise
            except Exception:  # never let a background loop die
                log.exception("quota %s failed", what)
            await self.clock.sleep(interval_s)

    def start(self) -> None:
        if self.redis is not None and not self._background:
            loop = asyncio.get_running_loop()
            self._background = [
                loop.create_task(self._every(self.heartbeat_interval_s, self.beat, "heartbeat"), name="quota-beat"),
                loop.create_task(self._every(self.sync_interval_s, self.sync, "sync"), name="quota-sync"),
            ]

    async def stop(self) -> None:
        for task in self._background:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass
        self._background = []
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=1.0)
        if self.redis is not None:
            try:
                await self.sync(final=True)  # give the leases back
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
            "replica_id": self.replica_id,
            "replicas": self.divisor(),
            **self.counts,
            "leases": len(self.book),
            "pending_settles": len(self._pending),
            "last_error": self.last_error,
        }
