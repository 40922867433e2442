-- Cyclic and double barriers (after the prelude and lua/deadlines.lua).
-- KEYS: 1 record hash, 2 arrivals zset (participant -> deadline ms), 3
-- arrival order zset (participant -> seq), 4 expired zset (participant ->
-- seq), 5 generation counter (next_token).
-- The record's fields: gen (the current generation), parties, entered (a
-- double barrier's trip, cjson), seq (arrival sequence numbers), kept (the
-- server ms every key is kept until), ended (the remembered ended
-- generations, oldest first, ENDED_KEPT at most, separated by spaces),
-- for each of those, 'e:<generation>' (how it ended, cjson), and for each
-- live arrival 'w:<participant>' (the wait that arrived last: a leave
-- naming another changes nothing).
-- ARGV: op, channel, kind ('c' cyclic | 'd' double), then
--   state   asked generation ('' for none)
--   peek    nothing more: as state asking about none, but nil (nothing
--           made, nothing written) when there is no record
--   arrive  participant, generation, parties, ttl_ms, arrival (the wait's id)
--   renew   participant, generation, ttl_ms
--   leave   participant, generation, arrival
--   break   generation ('' for the current one), reason ('reset' |
--           'timeout'), by (the timed-out participant; '' for a reset)
--   expiry  nothing more
--
-- Generations are compared as the decimal strings they are stored and
-- passed as (exact for any u64). Ended generations are stored as
-- cjson objects {g = generation, n = next, t = trip} or {g, n, b = broken},
-- with every generation a string (cjson writes numbers with 14 digits),
-- trip = {by, a = arrivals, x = expired (none in a trip stored before it
-- was kept)} and broken = {r = reason, by, a = arrived,
-- x = expired, m = missing}; participants are strings of any characters.
-- One is looked up by its field and decoded only when asked for.
--
-- Key lifetimes: every key lives at least KEEP_MS past the operation and
-- past its latest arrival deadline, and at most KEEP_SLACK_MS longer. The
-- instant they are kept until is `kept`; an operation that needs them
-- longer moves it to what it needs plus KEEP_SLACK_MS and sets every key's
-- expiry to it (about once per KEEP_SLACK_MS of use), and a key this
-- operation (re)made gets that expiry too. Every other operation sets none.
local rec, arr, ord, exp, counter = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local channel, double = ARGV[2], ARGV[3] == 'd'
local ENDED_KEPT = 16
local KEEP_SLACK_MS = 3600000

if op == 'expiry' then
  -- Milliseconds until the earliest arrival deadline (0 when past: the
  -- next operation drops it), -1 when none. Reads only.
  return earliest(arr) or -1
end

-- The generation whose end the operation may report ('' for none).
local asked = ''
if op == 'state' or op == 'break' then
  asked = ARGV[4]
elseif op == 'arrive' then
  asked = ARGV[5]
end

-- The record in one read (false for a field that is absent).
local fields = {'gen', 'parties', 'entered', 'kept', 'ended'}
if asked ~= '' then fields[#fields + 1] = 'e:' .. asked end
local f = redis.call('HMGET', rec, unpack(fields))
-- The current generation (a string), nil while there is no record.
local gen = f[1] or nil
if op == 'peek' and not gen then return false end
local parties_s, entered_s, ended_s = f[2] or nil, f[3] or nil, f[5] or nil
local kept = tonumber(f[4] or '')
-- How `asked` ended (cjson), as read: good until a generation ends here.
local asked_end, asked_read = f[6] or nil, true

-- Keys whose expiry this operation must set (it may have made them).
local touched = {}
-- Whether `kept` moved (every key's expiry is set).
local refresh = false

-- The keys are needed until server ms `t`.
local function needed_until(t)
  if not kept or t > kept then
    kept = t + KEEP_SLACK_MS
    refresh = true
  end
end

-- Sets the expiries the operation made necessary.
local function keep_keys()
  if refresh then
    redis.call('HSET', rec, 'kept', fmt(kept))
    for _, k in ipairs({rec, arr, ord, exp, counter}) do
      redis.call('PEXPIREAT', k, kept)
    end
  else
    for k in pairs(touched) do redis.call('PEXPIREAT', k, kept) end
  end
end

-- A record without `kept` (new, or made before it was kept) may hold
-- arrivals whose deadlines no `kept` covers yet.
needed_until(now_ms() + (gen and not kept and math.max(latest(arr) or 0, 0) or 0) + KEEP_MS)

-- An ended generation: {generation, next, 'tripped', by, arrivals, expired} or
-- {generation, next, 'broken', reason, by, arrived, expired, missing}.
local function ended_reply(e)
  if e.t then
    return {tonumber(e.g), tonumber(e.n), 'tripped', e.t.by, e.t.a, e.t.x or {}}
  end
  local b = e.b
  return {tonumber(e.g), tonumber(e.n), 'broken', b.r, b.by, b.a, b.x, tonumber(b.m)}
end

if op == 'arrive' and gen and ARGV[5] ~= gen and asked_end and not (double and entered_s) then
  -- An arrival in a generation that ended and is remembered (a woken
  -- waiter's): how it ended, and nothing else changes (arrivals that
  -- expired meanwhile are dropped by the next operation as they would be
  -- now: this one could end no generation).
  local reply = {'ended', ended_reply(cjson.decode(asked_end))}
  keep_keys()
  return reply
end

-- The next generation: the token rule on the counter (kept with the other
-- keys), and above the current generation even if the counter was lost
-- without the record.
local function draw()
  return fmt(next_token(counter, math.max(kept - now_ms(), 1), tonumber(gen or '0')))
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
  if double and entered_s then return cjson.decode(entered_s) end
  return nil
end

-- Deletes the record's fields `names` (a list of any length: unpack takes
-- a few thousand values at most).
local function hdel_all(names)
  for i = 1, #names, 1000 do
    redis.call('HDEL', rec, unpack(names, i, math.min(i + 999, #names)))
  end
end

-- Ends the current generation as `how` ({t = trip} or {b = broken}):
-- remembered (the oldest of ENDED_KEPT + 1 forgotten), the next one begun
-- with nothing in it, PUBLISHed.
local function end_generation(how)
  local nxt = draw()
  how.g, how.n = gen, nxt
  local forgotten = {}
  ended_s = ended_s and ended_s .. ' ' .. gen or gen
  local _, spaces = string.gsub(ended_s, ' ', '')
  for _ = ENDED_KEPT, spaces do
    local sp = string.find(ended_s, ' ', 1, true)
    forgotten[#forgotten + 1] = 'e:' .. string.sub(ended_s, 1, sp - 1)
    ended_s = string.sub(ended_s, sp + 1)
  end
  redis.call('HSET', rec, 'gen', nxt, 'e:' .. gen, cjson.encode(how), 'ended', ended_s)
  forgotten[#forgotten + 1], forgotten[#forgotten + 2] = 'parties', 'entered'
  for _, p in ipairs(redis.call('ZRANGE', arr, 0, -1)) do
    forgotten[#forgotten + 1] = 'w:' .. p
  end
  hdel_all(forgotten)
  redis.call('DEL', arr, ord, exp)
  touched[arr], touched[ord], touched[exp] = nil, nil, nil
  gen, parties_s, entered_s, asked_read = nxt, nil, nil, false
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
      redis.call('HDEL', rec, 'w:' .. p)
      redis.call('ZADD', exp, 'NX', seq(), p)
    end
    touched[exp] = true
  end
  if double and entered_s and redis.call('ZCARD', arr) == 0 then
    end_generation({t = entered()})
  end
end

-- How generation `g` ended, if remembered.
local function remembered(g)
  local s
  if g == asked and asked_read then
    s = asked_end
  else
    s = redis.call('HGET', rec, 'e:' .. g)
  end
  if s then return cjson.decode(s) end
  return nil
end

-- The participants of the current generation in arrival order.
local function in_order()
  return redis.call('ZRANGE', ord, 0, -1)
end

local function trip_reply(t)
  return {t.by, t.a, t.x or {}}
end

-- The reply for generation `g`, which is not the current one.
local function not_current(g, unknown)
  local e = remembered(g)
  if e then return {'ended', ended_reply(e)} end
  return {unknown, tonumber(gen)}
end

local reply
if op == 'state' or op == 'peek' then
  create()
  purge_arrivals()
  local rows = {}
  local zs = redis.call('ZRANGE', arr, 0, -1, 'WITHSCORES')
  if #zs > 0 then
    local deadlines = {}
    for i = 1, #zs, 2 do deadlines[zs[i]] = tonumber(zs[i + 1]) end
    for _, p in ipairs(in_order()) do
      if deadlines[p] then rows[#rows + 1] = {p, deadlines[p] - now_ms()} end
    end
  end
  local trip = entered()
  local e = asked ~= '' and asked ~= gen and remembered(asked)
  reply = {
    tonumber(gen),
    tonumber(parties_s or '-1'),
    trip and trip_reply(trip) or {},
    rows,
    e and ended_reply(e) or {},
  }
elseif op == 'arrive' then
  local p, g, parties, ttl, wait = ARGV[4], ARGV[5], tonumber(ARGV[6]), tonumber(ARGV[7]), ARGV[8]
  create()
  purge_arrivals()
  local stored = tonumber(parties_s or '')
  local trip = entered()
  if g ~= gen then
    reply = not_current(g, 'stale')
  elseif stored and stored ~= parties then
    reply = {'differ', stored}
  elseif trip then
    if redis.call('ZSCORE', arr, p) then
      local deadline = now_ms() + ttl
      needed_until(deadline + KEEP_MS)
      redis.call('ZADD', arr, 'XX', deadline, p)
      redis.call('HSET', rec, 'w:' .. p, wait)
      reply = {'entered', trip_reply(trip)}
    else
      reply = {'full', stored}
    end
  else
    local deadline = now_ms() + ttl
    needed_until(deadline + KEEP_MS)
    -- 1 when p is new (else its deadline moved).
    local new = redis.call('ZADD', arr, deadline, p) == 1
    if new then
      redis.call('ZADD', ord, seq(), p)
      redis.call('ZREM', exp, p)
    end
    redis.call('HSET', rec, 'w:' .. p, wait)
    if not stored then redis.call('HSET', rec, 'parties', parties) end
    local n = redis.call('ZCARD', arr)
    if new and n == 1 then
      -- The first live arrival made the arrival and order sets (they
      -- always hold the same participants).
      touched[arr], touched[ord] = true, true
    end
    if n >= parties then
      trip = {by = p, a = in_order(), x = redis.call('ZRANGE', exp, 0, -1)}
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
    local deadline = now_ms() + ttl
    needed_until(deadline + KEEP_MS)
    redis.call('ZADD', arr, 'XX', deadline, p)
    reply = 1
  end
elseif op == 'leave' then
  local p, g, wait = ARGV[4], ARGV[5], ARGV[6]
  if not gen then return {'not_there'} end
  purge_arrivals()
  reply = {'not_there'}
  -- An arrival without its wait's id was made before ids were kept.
  local last = redis.call('HGET', rec, 'w:' .. p)
  if g == gen and (not last or last == wait) and redis.call('ZREM', arr, p) == 1 then
    redis.call('ZREM', ord, p)
    redis.call('HDEL', rec, 'w:' .. p)
    local n = redis.call('ZCARD', arr)
    if n == 0 and double and entered_s then
      end_generation({t = entered()})
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
      local parties = tonumber(parties_s or '0')
      missing = math.max(0, parties - redis.call('ZCARD', arr))
    end
    local broken = {r = reason, by = by, a = in_order(), x = redis.call('ZRANGE', exp, 0, -1), m = missing}
    reply = {'ended', ended_reply(end_generation({b = broken}))}
  end
else
  return redis.error_reply('coord: unknown barrier operation ' .. tostring(op))
end

keep_keys()
return reply
