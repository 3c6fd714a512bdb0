"""Quota counters on Redis, shared by every replica: one atomic Lua call per decision.

The acquire script is :class:`seawall.algorithms.quota.LocalQuota.acquire` line for line (the GCRA
step of :func:`seawall.algorithms.gcra.gcra_take`, the lease set for concurrency, the per-day
counter), run inside Redis so that check and charge are one step: two replicas can never both see
"one left" and both take it. Time is Redis's own clock (``TIME``), so replicas with skewed clocks
still share one bucket; tests pass an explicit time instead to compare against the local algorithm.

Keys (all of one tenant share the hash tag ``{tenant}``, so a request's keys live in one cluster
slot): ``<prefix>:q:{tenant}:<kind>:<id>:{rpm,tpm,conc,day}``. Only the base name of each scope is
passed in ``KEYS`` (the script appends the suffixes, all in the same slot) and the limits travel as
one string: the command is packed in Python on every request, and halving its arguments was the
largest single saving measured (see docs/decisions.md). Buckets expire when full again,
lease sets when their last lease would, day counters after two days; nothing needs cleaning up.
Concurrency is a sorted set of leases scored by expiry (the request's deadline plus a margin), so
a replica that dies mid-request cannot leak a slot for longer than that.

Errors are not handled here: the caller (:mod:`seawall.edges.quota`) puts a timeout and a breaker
around every call and falls back to local counters.
"""

from __future__ import annotations

import asyncio
import hashlib
import sys
from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.connection import AbstractConnection
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import NoScriptError

from seawall.algorithms.quota import Dimension, QuotaDecision, QuotaScope, decision_from

__all__ = ["RedisQuotaStore"]

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

# KEYS: the base name of each scope. ARGV: the limits ("rpm tpm concurrency tokens/day" per scope,
# joined by ';', -1: no limit), now (<= 0: Redis TIME), tokens, lease id, lease ttl s.
# Returns {allowed, dimension code, scope index, wait s, now, then per scope the rpm and tpm TATs
# ('' if none)}, fractional values as strings (Lua numbers would become integers).
ACQUIRE_LUA = _PRELUDE + """
local tokens = tonumber(ARGV[3])
local lease = ARGV[4]
local ttl = tonumber(ARGV[5])
local day = math.floor(now / 86400)
local worst_wait, worst_dim, worst_i = -1, 0, 0
local rt, tt, nr, nt = {}, {}, {}, {}
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
  if conc > 0 then
    redis.call('ZREMRANGEBYSCORE', key(i, ':conc'), '-inf', now)
    if redis.call('ZCARD', key(i, ':conc')) >= conc then refuse(1.0, 1, i) end
  end
  if rpm > 0 then
    local tat = tonumber(redis.call('GET', key(i, ':rpm')) or now)
    local new_tat, wait = take(tat, 60 / rpm, rpm, 1)
    rt[i], nr[i] = tat, new_tat
    if wait > 0 then refuse(wait, 2, i) end
  end
  if tpm > 0 then
    local tat = tonumber(redis.call('GET', key(i, ':tpm')) or now)
    local new_tat, wait = take(tat, 60 / tpm, tpm, tokens)
    tt[i], nt[i] = tat, new_tat
    if wait > 0 then refuse(wait, 3, i) end
  end
  if daily > 0 then
    local used = 0
    if tonumber(redis.call('HGET', key(i, ':day'), 'd') or -1) == day then
      used = tonumber(redis.call('HGET', key(i, ':day'), 'u') or 0)
    end
    if used + tokens > daily then
      if tokens > daily then refuse(math.huge, 4, i) else refuse((day + 1) * 86400 - now, 4, i) end
    end
  end
end
local out = {}
if worst_dim ~= 0 then
  out = {0, worst_dim, worst_i, f(worst_wait), f(now)}
  for i = 1, n do
    out[#out + 1] = f(rt[i])
    out[#out + 1] = f(tt[i])
  end
  return out
end
out = {1, 0, 0, '0', f(now)}
for i = 1, n do
  local rpm, tpm, conc, daily = limits(i)
  if nr[i] then
    redis.call('SET', key(i, ':rpm'), f(nr[i]), 'PX', math.ceil((nr[i] - now) * 1000) + 1000)
  end
  if nt[i] then
    redis.call('SET', key(i, ':tpm'), f(nt[i]), 'PX', math.ceil((nt[i] - now) * 1000) + 1000)
  end
  if conc > 0 then
    redis.call('ZADD', key(i, ':conc'), now + ttl, lease)
    local ms = math.ceil(ttl * 1000) + 1000
    if redis.call('PTTL', key(i, ':conc')) < ms then redis.call('PEXPIRE', key(i, ':conc'), ms) end
  end
  if daily > 0 then
    if tonumber(redis.call('HGET', key(i, ':day'), 'd') or -1) ~= day then
      redis.call('HSET', key(i, ':day'), 'd', day, 'u', 0)
    end
    redis.call('HINCRBY', key(i, ':day'), 'u', tokens)
    redis.call('EXPIRE', key(i, ':day'), 172800)
  end
  out[#out + 1] = f(nr[i])
  out[#out + 1] = f(nt[i])
end
return out
"""

# ARGV: the limits as for acquire, now (<= 0: Redis TIME), tokens delta (actual - estimated), lease
# id, UTC day of the acquisition.
SETTLE_LUA = _PRELUDE + """
local delta = tonumber(ARGV[3])
local lease = ARGV[4]
local day = tonumber(ARGV[5])
for i = 1, n do
  local rpm, tpm, conc, daily = limits(i)
  if conc > 0 then redis.call('ZREM', key(i, ':conc'), lease) end
  if delta ~= 0 and tpm > 0 then
    local tat = tonumber(redis.call('GET', key(i, ':tpm')) or now)
    if tat < now then tat = now end
    local new_tat = tat + delta * 60 / tpm
    if new_tat > now then
      redis.call('SET', key(i, ':tpm'), f(new_tat), 'PX', math.ceil((new_tat - now) * 1000) + 1000)
    else
      redis.call('DEL', key(i, ':tpm'))
    end
  end
  if delta ~= 0 and daily > 0 and tonumber(redis.call('HGET', key(i, ':day'), 'd') or -1) == day then
    if redis.call('HINCRBY', key(i, ':day'), 'u', delta) < 0 then redis.call('HSET', key(i, ':day'), 'u', 0) end
  end
end
return 1
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


_ACQUIRE, _SETTLE = _Script(ACQUIRE_LUA), _Script(SETTLE_LUA)


class RedisQuotaStore:
    """The Redis side of :class:`seawall.edges.quota.QuotaService`; every method may raise.

    The two per-request scripts bypass redis-py's command layer (measured: its argument packing,
    pool bookkeeping and per-call ``wait_for`` cost more than the round trip itself): the
    ``EVALSHA`` command is packed here, with everything but the four per-request arguments cached
    per scope set, and sent on one of at most ``connections`` redis-py connections (a semaphore and
    a free list; without the bound, a burst at start-up opened a connection per request and timed
    them all out). Timeouts are the caller's (``asyncio.timeout``); a connection that saw an error
    or a timeout is disconnected at once (a late reply must never be read as the next one's) and
    reconnects on its next use. ``NOSCRIPT`` (a Redis restart empties its script cache) loads the
    script and retries once.
    """

    def __init__(self, url: str, *, prefix: str = "seawall", connections: int = 16,
                 connect_timeout_s: float = 1.0) -> None:
        self.prefix = prefix
        self.client = aioredis.Redis.from_url(
            url, socket_timeout=None, socket_connect_timeout=connect_timeout_s,
            retry=Retry(NoBackoff(), 0), max_connections=connections + 4, decode_responses=True,
        )
        self._heartbeat = self.client.register_script(HEARTBEAT_LUA)
        self._heads: dict[tuple[bytes, int], tuple[Sequence[QuotaScope], tuple[bytes, int]]] = {}
        self._slots = asyncio.Semaphore(connections)
        self._idle: list[AbstractConnection] = []

    def keys_of(self, scope: QuotaScope) -> list[str]:
        """The scope's four keys (for tests and tools; the scripts derive them from the base)."""
        base = self._base(scope)
        return [f"{base}:{suffix}" for suffix in ("rpm", "tpm", "conc", "day")]

    def _base(self, scope: QuotaScope) -> str:
        return f"{self.prefix}:q:{{{_tag(scope.tenant)}}}:{scope.kind}:{scope.id}"

    def _head(self, script: _Script, scopes: Sequence[QuotaScope]) -> tuple[bytes, int]:
        """``EVALSHA sha numkeys keys... limits`` packed, and the argument count so far."""
        cache_key = (script.sha, id(scopes))  # the policy hands the same tuple for the same key
        entry = self._heads.get(cache_key)
        if entry is not None and entry[0] is scopes:
            return entry[1]
        limits = ";".join(
            f"{_limit(s.limits.requests_per_min)} {_limit(s.limits.tokens_per_min)} "
            f"{_limit(s.limits.concurrent_requests)} {_limit(s.limits.tokens_per_day)}" for s in scopes)
        parts = [b"EVALSHA", script.sha, str(len(scopes)).encode(),
                 *(self._base(s).encode() for s in scopes), limits.encode()]
        found = (b"".join(_bulk(p) for p in parts), len(parts))
        if len(self._heads) > 100_000:
            self._heads.clear()
        self._heads[cache_key] = (scopes, found)  # holding the tuple keeps its id from being reused
        return found

    async def _eval(self, script: _Script, scopes: Sequence[QuotaScope], *args: object) -> Any:
        head, count = self._head(script, scopes)
        packed = (b"*%d\r\n" % (count + len(args)) + head
                  + b"".join(_bulk(str(a).encode()) for a in args))
        async with self._slots:
            conn = self._idle.pop() if self._idle else await self.client.connection_pool.get_connection()
            try:
                for attempt in (0, 1):
                    try:
                        await conn.send_packed_command(packed, check_health=False)
                        return await conn.read_response()
                    except NoScriptError:
                        if attempt:
                            raise
                        await self.client.script_load(script.lua)
                raise AssertionError("unreachable")  # pragma: no cover
            except BaseException:
                if not isinstance(sys.exc_info()[1], NoScriptError):
                    await conn.disconnect(nowait=True)
                raise
            finally:
                self._idle.append(conn)

    async def acquire(self, scopes: Sequence[QuotaScope], tokens: int, lease_id: str, lease_ttl_s: float,
                      now_s: float = 0.0) -> tuple[QuotaDecision, float]:
        """The decision and Redis's clock at the time (unix seconds)."""
        out = await self._eval(_ACQUIRE, scopes, now_s, tokens, lease_id, lease_ttl_s)
        now = float(out[4])
        tats = [float(x) if x != "" else None for x in out[5:]]
        if int(out[0]) == 1:
            return decision_from(scopes, tats[0::2], tats[1::2], now), now
        return decision_from(scopes, tats[0::2], tats[1::2], now, Dimension.from_code(int(out[1])),
                             int(out[2]) - 1, float(out[3])), now

    async def settle(self, scopes: Sequence[QuotaScope], tokens_delta: int, lease_id: str, acquired_s: float,
                     now_s: float = 0.0) -> None:
        await self._eval(_SETTLE, scopes, now_s, tokens_delta, lease_id, int(acquired_s // 86_400))

    async def heartbeat(self, replica_id: str, ttl_s: float) -> int:
        return int(await self._heartbeat(keys=[f"{self.prefix}:replicas"], args=[replica_id, ttl_s]))

    async def leave(self, replica_id: str) -> None:
        await self.client.zrem(f"{self.prefix}:replicas", replica_id)

    async def close(self) -> None:
        for conn in self._idle:
            await self.client.connection_pool.release(conn)
        self._idle.clear()
        await self.client.aclose()
