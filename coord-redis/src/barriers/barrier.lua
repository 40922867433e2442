-- Cyclic and double barriers (after the prelude and lua/deadlines.lua).
-- KEYS: 1 record hash (gen, parties, entered, seq), 2 arrivals zset
-- (participant -> deadline ms), 3 arrival order zset (participant -> seq),
-- 4 expired zset (participant -> seq), 5 ended generations list (cjson,
-- newest first, ENDED_KEPT at most), 6 generation counter (next_token).
-- ARGV: op, channel, kind ('c' cyclic | 'd' double), then
--   state   asked generation ('' for none)
--   arrive  participant, generation, parties, ttl_ms
--   renew   participant, generation, ttl_ms
--   leave   participant, generation
--   break   generation ('' for the current one), reason ('reset' |
--           'timeout'), by (the timed-out participant; '' for a reset)
--   expiry  nothing more
--
-- Generations are compared as the decimal strings they are stored and
-- passed as (exact for any u64). Ended generations are stored as
-- cjson objects {g = generation, n = next, t = trip} or {g, n, b = broken},
-- with every generation a string (cjson writes numbers with 14 digits),
-- trip = {by, a = arrivals} and broken = {r = reason, by, a = arrived,
-- x = expired, m = missing}; participants are strings of any characters.
local rec, arr, ord, exp, hist, counter = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local channel, double = ARGV[2], ARGV[3] == 'd'
local ENDED_KEPT = 16

if op == 'expiry' then
  -- Milliseconds until the earliest arrival deadline (0 when past: the
  -- next operation drops it), -1 when none. Reads only.
  return earliest(arr) or -1
end

-- The current generation (a string), nil while there is no record.
local gen = redis.call('HGET', rec, 'gen') or nil

-- The next generation: the token rule on the counter, and above the
-- current generation even if the counter was lost without the record.
local function draw()
  if gen and tonumber(redis.call('GET', counter) or '0') < tonumber(gen) then
    redis.call('SET', counter, gen)
  end
  return fmt(next_token(counter, KEEP_MS))
end

-- Makes the record if there is none.
local function create()
  if not gen then
    gen = draw()
    redis.call('HSET', rec, 'gen', gen)
  end
end

-- The next arrival sequence number (orders arrivals and expiries).
local function seq()
  return redis.call('HINCRBY', rec, 'seq', 1)
end

-- A double barrier's entered trip (decoded), or nil.
local function entered()
  if not double then return nil end
  local e = redis.call('HGET', rec, 'entered')
  if e then return cjson.decode(e) end
  return nil
end

-- Ends the current generation as `how` ({t = trip} or {b = broken}):
-- remembered, the next one begun with nothing in it, PUBLISHed.
local function end_generation(how)
  local nxt = draw()
  how.g, how.n = gen, nxt
  redis.call('LPUSH', hist, cjson.encode(how))
  redis.call('LTRIM', hist, 0, ENDED_KEPT - 1)
  redis.call('HSET', rec, 'gen', nxt)
  redis.call('HDEL', rec, 'parties', 'entered')
  redis.call('DEL', arr, ord, exp)
  gen = nxt
  redis.call('PUBLISH', channel, 'ended')
  return how
end

-- Drops the arrivals whose deadline passed (remembered as expired, in the
-- order they expired: by deadline, then by arrival), and ends a double
-- barrier's tripped generation once nobody is inside.
local function purge_arrivals()
  local gone = redis.call('ZRANGEBYSCORE', arr, '-inf', now_ms(), 'WITHSCORES')
  if #gone > 0 then
    local list, deadline, order = {}, {}, {}
    for i = 1, #gone, 2 do
      local p = gone[i]
      list[#list + 1] = p
      deadline[p] = tonumber(gone[i + 1])
      order[p] = tonumber(redis.call('ZSCORE', ord, p) or '0')
    end
    table.sort(list, function(x, y)
      if deadline[x] ~= deadline[y] then return deadline[x] < deadline[y] end
      return order[x] < order[y]
    end)
    for _, p in ipairs(list) do
      redis.call('ZREM', arr, p)
      redis.call('ZREM', ord, p)
      redis.call('ZADD', exp, 'NX', seq(), p)
    end
  end
  if double and redis.call('ZCARD', arr) == 0 then
    local trip = entered()
    if trip then end_generation({t = trip}) end
  end
end

-- How generation `g` ended, if remembered.
local function remembered(g)
  for _, s in ipairs(redis.call('LRANGE', hist, 0, -1)) do
    local e = cjson.decode(s)
    if e.g == g then return e end
  end
  return nil
end

-- The participants of the current generation in arrival order.
local function in_order()
  return redis.call('ZRANGE', ord, 0, -1)
end

local function trip_reply(t)
  return {t.by, t.a}
end

-- An ended generation: {generation, next, 'tripped', by, arrivals} or
-- {generation, next, 'broken', reason, by, arrived, expired, missing}.
local function ended_reply(e)
  if e.t then
    return {tonumber(e.g), tonumber(e.n), 'tripped', e.t.by, e.t.a}
  end
  local b = e.b
  return {tonumber(e.g), tonumber(e.n), 'broken', b.r, b.by, b.a, b.x, tonumber(b.m)}
end

-- The reply for generation `g`, which is not the current one.
local function not_current(g, unknown)
  local e = remembered(g)
  if e then return {'ended', ended_reply(e)} end
  return {unknown, tonumber(gen)}
end

local reply
if op == 'state' then
  local asked = ARGV[4]
  create()
  purge_arrivals()
  local deadlines = {}
  local zs = redis.call('ZRANGE', arr, 0, -1, 'WITHSCORES')
  for i = 1, #zs, 2 do deadlines[zs[i]] = tonumber(zs[i + 1]) end
  local rows = {}
  for _, p in ipairs(in_order()) do
    if deadlines[p] then rows[#rows + 1] = {p, deadlines[p] - now_ms()} end
  end
  local trip = entered()
  local e = asked ~= '' and asked ~= gen and remembered(asked)
  reply = {
    tonumber(gen),
    tonumber(redis.call('HGET', rec, 'parties') or '-1'),
    trip and trip_reply(trip) or {},
    rows,
    e and ended_reply(e) or {},
  }
elseif op == 'arrive' then
  local p, g, parties, ttl = ARGV[4], ARGV[5], tonumber(ARGV[6]), tonumber(ARGV[7])
  create()
  purge_arrivals()
  local stored = tonumber(redis.call('HGET', rec, 'parties') or '')
  local trip = entered()
  if g ~= gen then
    reply = not_current(g, 'stale')
  elseif stored and stored ~= parties then
    reply = {'differ', stored}
  elseif trip then
    if redis.call('ZSCORE', arr, p) then
      redis.call('ZADD', arr, 'XX', now_ms() + ttl, p)
      reply = {'entered', trip_reply(trip)}
    else
      reply = {'full', stored}
    end
  else
    if redis.call('ZSCORE', arr, p) then
      redis.call('ZADD', arr, 'XX', now_ms() + ttl, p)
    else
      redis.call('ZADD', arr, now_ms() + ttl, p)
      redis.call('ZADD', ord, seq(), p)
      redis.call('ZREM', exp, p)
    end
    if not stored then redis.call('HSET', rec, 'parties', parties) end
    local n = redis.call('ZCARD', arr)
    if n >= parties then
      trip = {by = p, a = in_order()}
      if double then
        redis.call('HSET', rec, 'entered', cjson.encode(trip))
        redis.call('PUBLISH', channel, 'entered')
        reply = {'entered', trip_reply(trip)}
      else
        reply = {'ended', ended_reply(end_generation({t = trip}))}
      end
    else
      reply = {'waiting', n}
    end
  end
elseif op == 'renew' then
  local p, g, ttl = ARGV[4], ARGV[5], tonumber(ARGV[6])
  if not gen then return 0 end
  purge_arrivals()
  reply = 0
  if g == gen and redis.call('ZSCORE', arr, p) then
    redis.call('ZADD', arr, 'XX', now_ms() + ttl, p)
    reply = 1
  end
elseif op == 'leave' then
  local p, g = ARGV[4], ARGV[5]
  if not gen then return {'not_there'} end
  purge_arrivals()
  reply = {'not_there'}
  if g == gen and redis.call('ZREM', arr, p) == 1 then
    redis.call('ZREM', ord, p)
    local n = redis.call('ZCARD', arr)
    if n == 0 then
      local trip = entered()
      if trip then end_generation({t = trip}) end
    end
    reply = {'left', n}
  end
elseif op == 'break' then
  local g, reason, by = ARGV[4], ARGV[5], ARGV[6]
  create()
  purge_arrivals()
  if g == '' then g = gen end
  local trip = entered()
  if g ~= gen then
    reply = not_current(g, 'unknown')
  elseif trip and reason == 'timeout' then
    reply = {'entered', trip_reply(trip)}
  else
    local missing = 0
    if not trip then
      local parties = tonumber(redis.call('HGET', rec, 'parties') or '0')
      missing = math.max(0, parties - redis.call('ZCARD', arr))
    end
    local broken = {r = reason, by = by, a = in_order(), x = redis.call('ZRANGE', exp, 0, -1), m = missing}
    reply = {'ended', ended_reply(end_generation({b = broken}))}
  end
else
  return redis.error_reply('coord: unknown barrier operation ' .. tostring(op))
end

-- Every key of the barrier lives KEEP_MS past its latest arrival deadline
-- (or past this operation).
keep(arr, {rec, ord, exp, hist, counter}, KEEP_MS)
return reply
