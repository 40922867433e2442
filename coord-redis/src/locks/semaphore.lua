-- Counting semaphores, each lease one permit or several (after the prelude,
-- lua/deadlines.lua and fair.lua, whose queued step goes on as 'acquire').
-- KEYS: 1 permits zset (holder -> deadline ms), 2 permit tokens hash,
-- 3 limit (string), 4 token counter, 5 permit counts hash (holder -> the
-- permits of a lease holding more than one; a holder absent holds one),
-- 6 wide-waiter mark (string, PX: a waiter for several permits was refused
-- within a TTL).
-- ARGV: op, channel, holder, ttl_ms, limit, count (acquire: the permits
-- asked for, 1 if absent); force and inspect pass the op and the channel
-- alone (inspect also runs as fair.lua's list, which sets `queued`: a row
-- {'q', '', 0, queued, 0, 0} follows the permits); revoke the op, the
-- channel and a token: it removes the lease holding that token, as a
-- release would ({1, holder}, or {0, {live tokens}}).
-- A release publishes 'released' (wakes one waiter) when it frees one permit
-- and no waiter for several is marked; otherwise 'freed' (wakes every
-- waiter: a waiter for several must not swallow the wake-up a waiter for
-- one needed, and several permits may let several waiters in).
local permits, ptokens, limit_key, counter = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local counts, wide = KEYS[5], KEYS[6]
local channel, holder, ttl = ARGV[2], ARGV[3], tonumber(ARGV[4] or 0)
purge(permits, ptokens, counts)

local function live(who)
  return redis.call('ZSCORE', permits, who) ~= false
end

-- The permits `who`'s live lease holds.
local function held_by(who)
  return tonumber(redis.call('HGET', counts, who) or '1')
end

-- The permits held by every live lease.
local function used()
  local n = redis.call('ZCARD', permits)
  local cs = redis.call('HVALS', counts)
  for i = 1, #cs do n = n + tonumber(cs[i]) - 1 end
  return n
end

-- The message of a release of `n` permits.
local function freed(n)
  if n > 1 or redis.call('EXISTS', wide) == 1 then return 'freed' end
  return 'released'
end

if op == 'acquire' then
  local limit, want = tonumber(ARGV[5]), tonumber(ARGV[6] or '1')
  local stored = tonumber(redis.call('GET', limit_key) or '0')
  if redis.call('ZCARD', permits) > 0 and stored ~= limit then return {-1, stored} end
  local mine = 0
  if live(holder) then mine = held_by(holder) end
  if used() - mine + want <= limit then
    local tok = next_token(counter, ttl + LOCK_COUNTER_KEEP_MS)
    redis.call('ZADD', permits, now_ms() + ttl, holder)
    redis.call('HSET', ptokens, holder, fmt(tok))
    if want > 1 then
      redis.call('HSET', counts, holder, want)
    elseif mine > 1 then
      redis.call('HDEL', counts, holder)
    end
    redis.call('SET', limit_key, limit)
    keep(permits, {ptokens, limit_key, counts}, 0)
    if on_grant then on_grant() end
    return {1, tok, 1}
  end
  -- The mark is only ever lengthened: a short-lived wide waiter must not
  -- cut short the mark of one that waits longer (or of a fair waiter).
  if want > 1 and redis.call('PTTL', wide) < ttl then
    redis.call('SET', wide, '1', 'PX', ttl)
  end
  return {0, earliest(permits)}
elseif op == 'extend' then
  if not live(holder) then return 0 end
  redis.call('ZADD', permits, now_ms() + ttl, holder)
  keep(permits, {ptokens, limit_key, counts}, 0)
  return 1
elseif op == 'release' then
  if not live(holder) then return -1 end
  local n = held_by(holder)
  redis.call('ZREM', permits, holder)
  redis.call('HDEL', ptokens, holder)
  redis.call('HDEL', counts, holder)
  keep(permits, {ptokens, limit_key, counts}, 0)
  redis.call('PUBLISH', channel, freed(n))
  return 0
elseif op == 'force' then
  local n = redis.call('ZCARD', permits)
  redis.call('DEL', permits, ptokens, limit_key, counts, wide)
  if n > 0 then redis.call('PUBLISH', channel, 'forced') end
  return n
elseif op == 'inspect' then
  local out = {}
  local limit = tonumber(redis.call('GET', limit_key) or '0')
  local ps = redis.call('ZRANGE', permits, 0, -1, 'WITHSCORES')
  for i = 1, #ps, 2 do
    local tok = redis.call('HGET', ptokens, ps[i])
    out[#out + 1] = {'p', ps[i], tonumber(tok or '0'), held_by(ps[i]),
      tonumber(ps[i + 1]) - now_ms(), limit}
  end
  if #out > 0 and queued and queued > 0 then out[#out + 1] = {'q', '', 0, queued, 0, 0} end
  return out
elseif op == 'revoke' then
  local live = {}
  local ts = redis.call('HGETALL', ptokens)
  for i = 1, #ts, 2 do
    if ts[i + 1] == ARGV[3] then
      redis.call('ZREM', permits, ts[i])
      redis.call('HDEL', ptokens, ts[i])
      redis.call('HDEL', counts, ts[i])
      keep(permits, {ptokens, limit_key, counts}, 0)
      redis.call('PUBLISH', channel, 'forced')
      return {1, ts[i]}
    end
    live[#live + 1] = tonumber(ts[i + 1])
  end
  return {0, live}
end
return redis.error_reply('coord: unknown semaphore operation ' .. tostring(op))
