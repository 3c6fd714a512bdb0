"""Quota counters on Redis, shared by every replica: one atomic Lua script for every change.

The script (``lua/take.lua``, package data; ``SCRIPT LOAD`` once, then ``EVALSHA``) does, in one
step: adjustments (leases given back, token estimates reconciled, debts;
:meth:`seawall.algorithms.quota.LocalQuota.adjust`) and the release of a concurrency lease; the
decision on a request (:meth:`LocalQuota.acquire` line for line: the GCRA step of
:func:`seawall.algorithms.gcra.gcra_take`, the lease set for concurrency, the per-day counter), so
that check and charge are one step and two replicas can never both see "one left" and both take
it; then leases for the replica to spend without asking (:meth:`LocalQuota.grant`, at most 1/(2N)
of what is left, see :mod:`seawall.algorithms.quota_lease`); and it answers with every scope's
state (:meth:`LocalQuota.peek`), which the replica keeps as its snapshot. A request decided here, a
sync of many leases and the end of a request holding a concurrency slot are all this one script.
Time is Redis's own clock (``TIME``), so replicas with skewed clocks still share one bucket; tests pass an
explicit time instead to compare against the local algorithm.

Keys (all of one tenant share the hash tag ``{tenant}``, so a call's keys live in one cluster
slot): ``<prefix>:q:{tenant}:<kind>:<id>:{rpm,tpm,conc,day}``. Only the base name of each scope is
passed in ``KEYS`` (the script appends the suffixes, all in the same slot) and the limits travel as
one string: the command is packed in Python, and halving its arguments was the largest single
saving measured (see docs/decisions.md). Buckets expire when full again, lease sets when their
last lease would, day counters after two days; nothing needs cleaning up. Concurrency is a sorted
set of leases scored by expiry (the request's deadline plus a margin), so a replica that dies
mid-request cannot leak a slot for longer than that.

Errors are not handled here: the caller (:mod:`seawall.edges.quota`) puts a timeout and a breaker
around every call and falls back to local counters.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.connection import AbstractConnection
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import NoScriptError

from seawall.algorithms.quota import DAY_S, Dimension, QuotaDecision, QuotaScope, decision_from
from seawall.algorithms.quota_lease import ScopeState, SyncOp

__all__ = ["RedisQuotaStore", "Take"]


def _lua(name: str) -> str:
    """A script shipped with the package (``lua/<name>.lua``, package data), read once at import."""
    return resources.files(__package__).joinpath("lua", f"{name}.lua").read_text(encoding="utf-8")


TAKE_LUA = _lua("take")  # every quota change; its contract (KEYS, ARGV, reply) heads the file
HEARTBEAT_LUA = _lua("heartbeat")  # replica liveness: a sorted set of replica ids scored by expiry


def _tag(tenant: str) -> str:
    return tenant.replace("{", "(").replace("}", ")")


def _limit(v: int | None) -> int:
    return -1 if v is None else v


def _bulk(value: bytes) -> bytes:
    return b"$%d\r\n%s\r\n" % (len(value), value)


class _Script:
    __slots__ = ("lua", "sha")

    def __init__(self, lua: str) -> None:
        self.lua = lua
        self.sha = hashlib.sha1(lua.encode()).hexdigest().encode()


_TAKE = _Script(TAKE_LUA)
_NO_OPS = b"$0\r\n\r\n"
BLOCK_TTL_S = 10.0  # a block of concurrency slots not refreshed (every sync) for this long is freed


@dataclass(frozen=True, slots=True)
class Take:
    """One call's answer: the decision (``None`` when no request was asked about), Redis's clock
    (unix seconds) and every scope's state after the call (with the cells granted as leases)."""

    decision: QuotaDecision | None
    at_s: float
    states: list[ScopeState]


def _ops(ops: Sequence[tuple[int, ...]]) -> bytes:
    return ";".join(" ".join(str(int(v)) for v in op) for op in ops).encode()  # the script reads integers


def _parse(scopes: Sequence[QuotaScope], out: list[Any], request: bool) -> Take:
    at_s = float(out[4])
    rows = [out[i:i + 10] for i in range(5, len(out), 10)]
    states = [ScopeState(float(r[2]), float(r[3]), int(at_s // DAY_S), int(r[4]), (int(r[5]), int(r[6]), int(r[7])),
                         int(r[8]), int(r[9])) for r in rows]
    if not request:
        return Take(None, at_s, states)
    rpm = [float(r[0]) if r[0] != "" else None for r in rows]
    tpm = [float(r[1]) if r[1] != "" else None for r in rows]
    if int(out[0]) == 1:
        return Take(decision_from(scopes, rpm, tpm, at_s), at_s, states)
    return Take(decision_from(scopes, rpm, tpm, at_s, Dimension.from_code(int(out[1])), int(out[2]) - 1,
                              float(out[3])), at_s, states)


class RedisQuotaStore:
    """The Redis side of :class:`seawall.edges.quota.QuotaService`; every method may raise.

    The script is called without redis-py's command layer (measured: its argument packing, pool
    bookkeeping and per-call ``wait_for`` cost more than the round trip itself): ``EVALSHA`` is
    packed here, with the head (script, keys, limits) cached per scope set, and sent on one of at
    most ``connections`` redis-py connections (a semaphore and a free list; without the bound, a
    burst at start-up opened a connection per request and timed them all out). A sync sends one
    ``EVALSHA`` per tenant in one write and reads the replies in order (a pipeline). Timeouts are
    the caller's (``asyncio.timeout``); a connection that saw an error or a timeout is
    disconnected at once (a late reply must never be read as the next one's) and reconnects on
    its next use. ``NOSCRIPT`` (a Redis restart or failover empties its script cache) loads the script and
    sends again the calls that were refused for it (they did not run).
    """

    def __init__(self, url: str, *, prefix: str = "seawall", connections: int = 16,
                 connect_timeout_s: float = 1.0, block_ttl_s: float = BLOCK_TTL_S) -> None:
        self.prefix = prefix
        self.block_ttl_s = block_ttl_s
        self.client = aioredis.Redis.from_url(
            url, socket_timeout=None, socket_connect_timeout=connect_timeout_s,
            retry=Retry(NoBackoff(), 0), max_connections=connections + 4, decode_responses=True,
        )
        self._heartbeat = self.client.register_script(HEARTBEAT_LUA)
        self._heads: dict[int, tuple[Sequence[QuotaScope], tuple[bytes, int]]] = {}
        self._slots = asyncio.Semaphore(connections)
        self._idle: list[AbstractConnection] = []

    def keys_of(self, scope: QuotaScope) -> list[str]:
        """The scope's keys (for tests and tools; the script derives them from the base)."""
        base = self._base(scope)
        return [f"{base}:{suffix}" for suffix in ("rpm", "tpm", "conc", "cb", "ce", "day")]

    def _base(self, scope: QuotaScope) -> str:
        return f"{self.prefix}:q:{{{_tag(scope.tenant)}}}:{scope.kind}:{scope.id}"

    def _head(self, scopes: Sequence[QuotaScope], cache: bool = True) -> tuple[bytes, int]:
        """``EVALSHA sha numkeys keys... limits`` packed, and the argument count so far."""
        entry = self._heads.get(id(scopes)) if cache else None  # the policy hands the same tuple per key
        if entry is not None and entry[0] is scopes:
            return entry[1]
        limits = ";".join(
            f"{_limit(s.limits.requests_per_min)} {_limit(s.limits.tokens_per_min)} "
            f"{_limit(s.limits.concurrent_requests)} {_limit(s.limits.tokens_per_day)}" for s in scopes)
        parts = [b"EVALSHA", _TAKE.sha, str(len(scopes)).encode(),
                 *(self._base(s).encode() for s in scopes), limits.encode()]
        found = (b"".join(_bulk(p) for p in parts), len(parts))
        if cache:
            if len(self._heads) > 100_000:
                self._heads.clear()
            self._heads[id(scopes)] = (scopes, found)  # holding the tuple keeps its id from being reused
        return found

    def _pack(self, scopes: Sequence[QuotaScope], now_s: float, tokens: int, lease_id: str, lease_ttl_s: float,
              replicas: int, ops: bytes, release: str, owner: str, cache: bool = True) -> bytes:
        head, count = self._head(scopes, cache)
        tail = (_bulk(repr(now_s).encode()) + _bulk(str(tokens).encode()) + _bulk(lease_id.encode())
                + _bulk(repr(lease_ttl_s).encode()) + _bulk(str(replicas).encode())
                + (_bulk(ops) if ops else _NO_OPS) + _bulk(release.encode()) + _bulk(owner.encode())
                + _bulk(repr(self.block_ttl_s).encode()))
        return b"*%d\r\n" % (count + 9) + head + tail

    async def _send(self, commands: list[bytes]) -> list[Any]:
        """Send ``commands`` in one write and read their replies in order."""
        async with self._slots:
            conn = self._idle.pop() if self._idle else await self.client.connection_pool.get_connection()
            try:
                replies: list[Any] = [None] * len(commands)
                todo = list(range(len(commands)))
                for attempt in (0, 1):
                    await conn.send_packed_command(b"".join(commands[i] for i in todo), check_health=False)
                    refused = []
                    for i in todo:
                        try:
                            replies[i] = await conn.read_response()
                        except NoScriptError:
                            refused.append(i)
                    if not refused:
                        return replies
                    if attempt:
                        raise NoScriptError("NOSCRIPT after loading the script")
                    # On this connection, not the pool's: under load every connection can be here
                    # at once after a failover, and a pool connection each overflowed the pool.
                    await conn.send_command("SCRIPT", "LOAD", _TAKE.lua, check_health=False)
                    await conn.read_response()
                    todo = refused
                raise AssertionError("unreachable")  # pragma: no cover
            except BaseException:
                await conn.disconnect(nowait=True)
                raise
            finally:
                self._idle.append(conn)

    async def take(self, scopes: Sequence[QuotaScope], tokens: int, lease_id: str = "", lease_ttl_s: float = 0.0, *,
                   replicas: int = 1, wants: Sequence[tuple[int, int, int, int, int]] | None = None, owner: str = "",
                   now_s: float = 0.0) -> Take:
        """Decide a request (``tokens``: its estimate) on the shared counters and, if allowed, charge
        it and hand out leases of up to ``wants`` per scope: (requests, tokens, tokens today, a block
        of concurrency slots for ``owner`` to grow to (-1: none), the slots it has in use)."""
        ops = b"" if wants is None else _ops([(0, 0, 0, 0, *w) for w in wants])
        packed = self._pack(scopes, now_s, tokens, lease_id, lease_ttl_s, replicas, ops, "", owner)
        out = (await self._send([packed]))[0]
        return _parse(scopes, out, True)

    async def acquire(self, scopes: Sequence[QuotaScope], tokens: int, lease_id: str, lease_ttl_s: float,
                      now_s: float = 0.0) -> tuple[QuotaDecision, float]:
        """The decision and Redis's clock at the time (unix seconds); no leases."""
        took = await self.take(scopes, tokens, lease_id, lease_ttl_s, now_s=now_s)
        assert took.decision is not None
        return took.decision, took.at_s

    async def settle(self, scopes: Sequence[QuotaScope], tokens_delta: int, lease_id: str, acquired_s: float,
                     now_s: float = 0.0) -> None:
        """Release a request's concurrency lease and reconcile its token estimate (``actual -
        estimated``; the day counter only if still the UTC day of ``acquired_s``)."""
        day = int(acquired_s // DAY_S)
        ops = _ops([(0, tokens_delta, tokens_delta, day, 0, 0, 0, -1, 0)] * len(scopes)) if tokens_delta else b""
        await self._send([self._pack(scopes, now_s, -1, "", 0.0, 1, ops, lease_id, "")])

    async def sync(self, batches: Sequence[Sequence[SyncOp]], replicas: int, owner: str = "", now_s: float = 0.0
                   ) -> list[Take]:
        """Apply leases' give-backs, debts and top-ups and resize ``owner``'s blocks of concurrency
        slots: one call per batch (the scopes of one tenant, one cluster slot), all in one write."""
        commands = []
        for batch in batches:
            scopes = [op.scope for op in batch]
            ops = _ops([(*op.adjust, op.day, *op.want, op.slots, op.floor) for op in batch])
            commands.append(self._pack(scopes, now_s, -1, "", 0.0, replicas, ops, "", owner, cache=False))
        replies = await self._send(commands)
        return [_parse([op.scope for op in batch], out, False) for batch, out in zip(batches, replies, strict=True)]

    async def heartbeat(self, replica_id: str, ttl_s: float) -> int:
        return int(await self._heartbeat(keys=[f"{self.prefix}:replicas"], args=[replica_id, ttl_s]))

    async def leave(self, replica_id: str) -> None:
        await self.client.zrem(f"{self.prefix}:replicas", replica_id)

    async def close(self) -> None:
        for conn in self._idle:
            await self.client.connection_pool.release(conn)
        self._idle.clear()
        await self.client.aclose()
