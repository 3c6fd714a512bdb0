"""Quota counters on Redis, shared by every replica: one atomic Lua script for every change.

The script (``TAKE_LUA``) does, in one step: adjustments (leases given back, token estimates
reconciled, debts; :meth:`seawall.algorithms.quota.LocalQuota.adjust`) and the release of a
concurrency lease; the decision on a request (:meth:`LocalQuota.acquire` line for line: the GCRA step
of :func:`seawall.algorithms.gcra.gcra_take`, the lease set for concurrency, the per-day counter),
so that check and charge are one step and two replicas can never both see "one left" and both take
it; then leases for the replica to spend without asking (:meth:`LocalQuota.grant`, at most 1/(2N) of
what is left, see :mod:`seawall.algorithms.quota_lease`); and it answers with every scope's state
(:meth:`LocalQuota.peek`), which the replica keeps as its snapshot. A request decided here, a sync
of many leases and the end of a request holding a concurrency slot are all this one script. Time is
Redis's own clock (``TIME``), so replicas with skewed clocks still share one bucket; tests pass an
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
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.connection import AbstractConnection
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import NoScriptError

from seawall.algorithms.quota import DAY_S, Dimension, QuotaDecision, QuotaScope, decision_from
from seawall.algorithms.quota_lease import ScopeState, SyncOp

__all__ = ["RedisQuotaStore", "Take"]

_PRELUDE = """
local now = tonumber(ARGV[2])
if now <= 0 then
  local t = redis.call('TIME')
  now = tonumber(t[1]) + tonumber(t[2]) / 1000000
end
local n = #KEYS
local function f(x)
  if x == nil then return '' end
  return string.format('%.6f', x)
end
local lims = {}
for r, t, c, d in string.gmatch(ARGV[1], '(-?%d+) (-?%d+) (-?%d+) (-?%d+)') do
  lims[#lims + 1] = {tonumber(r), tonumber(t), tonumber(c), tonumber(d)}
end
local function limits(i)
  local l = lims[i]
  return l[1], l[2], l[3], l[4]
end
local function key(i, suffix)
  return KEYS[i] .. suffix
end
"""

# KEYS: the base name of each scope. ARGV: [1] the limits ("rpm tpm concurrency tokens/day" per scope,
# joined by ';', -1: no limit), [2] now (<= 0: Redis TIME), [3] the request's tokens (-1: no request),
# [4] its concurrency lease id, [5] the lease's ttl s, [6] N replicas (leases are at most 1/(2N) of what
# is left), [7] per scope "adjust_rpm adjust_tpm adjust_day day want_rpm want_tpm want_day slots floor"
# joined by ';' ('': none; slots -1: leave the block alone), [8] a concurrency lease id to release
# ('': none), [9] the owner of the blocks of slots (the replica), [10] a block's ttl s.
# In order: adjustments and the release; the request (all or nothing, as LocalQuota.acquire); leases
# (LocalQuota.grant) and blocks of concurrency slots (LocalQuota.hold; never shrunk along with a
# request), unless the request was refused; then every scope's state (LocalQuota.peek).
# Returns {allowed, dimension code, scope index, wait s, now, then per scope: the rpm and tpm TATs the
# decision reports ('' if none), the rpm and tpm TATs now, tokens used today, granted rpm, tpm, day,
# the owner's block of slots (-1 if not asked) and the requests in flight}.
# Fractional values travel as strings (Lua numbers would become integers).
# Concurrency: a sorted set of per-request leases scored by expiry (':conc'), plus blocks of slots held
# by replicas: sizes in a hash by owner (':cb'), expiries in a sorted set (':ce'); in flight = both.
TAKE_LUA = _PRELUDE + """
local tokens = tonumber(ARGV[3])
local lease = ARGV[4]
local ttl = tonumber(ARGV[5])
local replicas = tonumber(ARGV[6])
local release = ARGV[8]
local owner = ARGV[9]
local block_ttl = tonumber(ARGV[10])
local day = math.floor(now / 86400)
local ops = {}
for ar, at, ad, d, wr, wt, wd, sl, fl in string.gmatch(ARGV[7],
    '(-?%d+) (-?%d+) (-?%d+) (-?%d+) (%d+) (%d+) (%d+) (-?%d+) (%d+)') do
  ops[#ops + 1] = {tonumber(ar), tonumber(at), tonumber(ad), tonumber(d), tonumber(wr), tonumber(wt), tonumber(wd),
                   tonumber(sl), tonumber(fl)}
end
local function in_flight(i)
  redis.call('ZREMRANGEBYSCORE', key(i, ':conc'), '-inf', now)
  local dead = redis.call('ZRANGEBYSCORE', key(i, ':ce'), '-inf', now)
  if #dead > 0 then
    redis.call('HDEL', key(i, ':cb'), unpack(dead))
    redis.call('ZREM', key(i, ':ce'), unpack(dead))
  end
  local count = redis.call('ZCARD', key(i, ':conc'))
  for _, v in ipairs(redis.call('HVALS', key(i, ':cb'))) do count = count + tonumber(v) end
  return count
end
local function tat_of(k)
  return tonumber(redis.call('GET', k) or now)
end
local function store(k, tat)
  if tat > now then
    redis.call('SET', k, f(tat), 'PX', math.ceil((tat - now) * 1000) + 1000)
  else
    redis.call('DEL', k)
  end
end
local function adjust(k, cells, interval)
  local tat = tat_of(k)
  if tat < now then tat = now end
  store(k, tat + cells * interval)
end
local function used_today(i)
  if tonumber(redis.call('HGET', key(i, ':day'), 'd') or -1) == day then
    return tonumber(redis.call('HGET', key(i, ':day'), 'u') or 0)
  end
  return 0
end
local function set_used(i, used)
  redis.call('HSET', key(i, ':day'), 'd', day, 'u', used)
  redis.call('EXPIRE', key(i, ':day'), 172800)
end
local function lease_cells(remaining, want)
  if want <= 0 or remaining <= 0 then return 0 end
  return math.max(0, math.min(want, math.floor(remaining / (2 * math.max(1, replicas)))))
end
for i = 1, n do
  local rpm, tpm, conc, daily = limits(i)
  if release ~= '' and conc > 0 then redis.call('ZREM', key(i, ':conc'), release) end
  local op = ops[i]
  if op then
    if op[1] ~= 0 and rpm > 0 then adjust(key(i, ':rpm'), op[1], 60 / rpm) end
    if op[2] ~= 0 and tpm > 0 then adjust(key(i, ':tpm'), op[2], 60 / tpm) end
    if op[3] ~= 0 and daily > 0 and op[4] == day then
      local used = used_today(i) + op[3]
      if used < 0 then used = 0 end
      set_used(i, used)
    end
  end
end
local allowed, worst_wait, worst_dim, worst_i = 1, -1, 0, 0
local rt, tt = {}, {}
if tokens >= 0 then
  local nr, nt = {}, {}
  local function refuse(wait, dim, i)
    if wait > worst_wait then worst_wait, worst_dim, worst_i = wait, dim, i end
  end
  local function take(tat, interval, burst, cost)
    if cost > burst then return tat, math.huge end
    local base = tat
    if base < now then base = now end
    local new_tat = base + interval * cost
    local allow_at = new_tat - interval * burst
    if allow_at > now then return tat, allow_at - now end
    return new_tat, 0
  end
  for i = 1, n do
    local rpm, tpm, conc, daily = limits(i)
    if conc > 0 and in_flight(i) >= conc then refuse(1.0, 1, i) end
    if rpm > 0 then
      local tat = tat_of(key(i, ':rpm'))
      local new_tat, wait = take(tat, 60 / rpm, rpm, 1)
      rt[i], nr[i] = tat, new_tat
      if wait > 0 then refuse(wait, 2, i) end
    end
    if tpm > 0 then
      local tat = tat_of(key(i, ':tpm'))
      local new_tat, wait = take(tat, 60 / tpm, tpm, tokens)
      tt[i], nt[i] = tat, new_tat
      if wait > 0 then refuse(wait, 3, i) end
    end
    if daily > 0 and used_today(i) + tokens > daily then
      if tokens > daily then refuse(math.huge, 4, i) else refuse((day + 1) * 86400 - now, 4, i) end
    end
  end
  if worst_dim ~= 0 then
    allowed = 0
  else
    for i = 1, n do
      local rpm, tpm, conc, daily = limits(i)
      if nr[i] then store(key(i, ':rpm'), nr[i]) end
      if nt[i] then store(key(i, ':tpm'), nt[i]) end
      if conc > 0 then
        redis.call('ZADD', key(i, ':conc'), now + ttl, lease)
        local ms = math.ceil(ttl * 1000) + 1000
        if redis.call('PTTL', key(i, ':conc')) < ms then redis.call('PEXPIRE', key(i, ':conc'), ms) end
      end
      if daily > 0 then set_used(i, used_today(i) + tokens) end
    end
    rt, tt = nr, nt
  end
end
local out = {allowed, worst_dim, worst_i, f(math.max(worst_wait, 0)), f(now)}
-- A lease on a per-minute rate: up to `want` cells of what the bucket has left, and the new TAT.
local function lease_rate(i, suffix, per_min, want)
  local tat = tat_of(key(i, suffix))
  local granted = 0
  if allowed == 1 and want > 0 then
    granted = lease_cells(math.floor(per_min - math.max(tat - now, 0) / (60 / per_min) + 0.001), want)
    if granted > 0 then
      store(key(i, suffix), math.max(tat, now) + granted * (60 / per_min))
      tat = tat_of(key(i, suffix))
    end
  end
  return granted, tat
end
for i = 1, n do
  local rpm, tpm, conc, daily = limits(i)
  local op = ops[i]
  local gr, gt, gd = 0, 0, 0
  local rtat, ttat, used = now, now, 0
  if rpm > 0 then gr, rtat = lease_rate(i, ':rpm', rpm, op and op[5] or 0) end
  if tpm > 0 then gt, ttat = lease_rate(i, ':tpm', tpm, op and op[6] or 0) end
  if daily > 0 then
    used = used_today(i)
    if allowed == 1 and op and op[7] > 0 then
      gd = lease_cells(daily - used, op[7])
      if gd > 0 then
        used = used + gd
        set_used(i, used)
      end
    end
  end
  local slots, count = -1, 0
  if conc > 0 then
    count = in_flight(i)
    if allowed == 1 and op and op[8] >= 0 and owner ~= '' then
      local have = tonumber(redis.call('HGET', key(i, ':cb'), owner) or 0)
      slots = op[8]
      if slots > have or tokens >= 0 then
        slots = math.max(have + lease_cells(conc - count, slots - have), math.min(op[9], slots))
        if tokens >= 0 then slots = math.max(slots, have) end
      end
      if slots > 0 then
        redis.call('HSET', key(i, ':cb'), owner, slots)
        redis.call('ZADD', key(i, ':ce'), now + block_ttl, owner)
        local ms = math.ceil(block_ttl * 1000) + 1000
        for _, suffix in ipairs({':cb', ':ce'}) do
          if redis.call('PTTL', key(i, suffix)) < ms then redis.call('PEXPIRE', key(i, suffix), ms) end
        end
      else
        redis.call('HDEL', key(i, ':cb'), owner)
        redis.call('ZREM', key(i, ':ce'), owner)
      end
      count = count + slots - have
    end
  end
  out[#out + 1] = f(rt[i])
  out[#out + 1] = f(tt[i])
  out[#out + 1] = f(math.max(rtat, now))
  out[#out + 1] = f(math.max(ttat, now))
  out[#out + 1] = used
  out[#out + 1] = gr
  out[#out + 1] = gt
  out[#out + 1] = gd
  out[#out + 1] = slots
  out[#out + 1] = count
end
return out
"""

# KEYS[1]: the replica set. ARGV: replica id, ttl s. Returns how many replicas are alive.
HEARTBEAT_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local ttl = tonumber(ARGV[2])
redis.call('ZADD', KEYS[1], now + ttl, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('PEXPIRE', KEYS[1], math.ceil(ttl * 2000))
return redis.call('ZCARD', KEYS[1])
"""


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
    its next use. ``NOSCRIPT`` (a Redis restart empties its script cache) loads the script and
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
                    await self.client.script_load(_TAKE.lua)
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
