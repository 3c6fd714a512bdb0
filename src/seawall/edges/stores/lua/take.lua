-- The quota script: every change to a tenant's quota counters, in one atomic step.
-- Loaded by seawall.edges.stores.redis_quota with SCRIPT LOAD and called with EVALSHA.
--
-- KEYS: the base name of each scope (the script appends ':rpm', ':tpm', ':conc', ':cb', ':ce', ':day';
-- all of one tenant share a hash tag, so one cluster slot).
-- ARGV:
--   [1] the limits, "rpm tpm concurrency tokens/day" per scope, joined by ';' (-1: no limit)
--   [2] now, unix seconds (<= 0: Redis TIME)
--   [3] the request's tokens (-1: no request)
--   [4] its concurrency lease id
--   [5] the lease's ttl s
--   [6] N replicas (leases are at most 1/(2N) of what is left)
--   [7] per scope "adjust_rpm adjust_tpm adjust_day day want_rpm want_tpm want_day slots floor" joined by ';'
--       ('': none; slots -1: leave the block alone)
--   [8] a concurrency lease id to release ('': none)
--   [9] the owner of the blocks of slots (the replica)
--   [10] a block's ttl s
-- In order: adjustments and the release; the request (all or nothing, as LocalQuota.acquire); leases
-- (LocalQuota.grant) and blocks of concurrency slots (LocalQuota.hold; never shrunk along with a
-- request), unless the request was refused; then every scope's state (LocalQuota.peek).
-- Returns {allowed, dimension code, scope index, wait s, now, then per scope: the rpm and tpm TATs the
-- decision reports ('' if none), the rpm and tpm TATs now, tokens used today, granted rpm, tpm, day,
-- the owner's block of slots (-1 if not asked) and the requests in flight}.
-- Dimension codes: 1 concurrency, 2 requests/min, 3 tokens/min, 4 tokens/day (Dimension.from_code).
-- Fractional values travel as strings (Lua numbers would become integers).
-- Concurrency: a sorted set of per-request leases scored by expiry (':conc'), plus blocks of slots held
-- by replicas: sizes in a hash by owner (':cb'), expiries in a sorted set (':ce'); in flight = both.
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
