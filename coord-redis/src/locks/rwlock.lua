-- Read-write locks with writer preference (after the prelude and
-- lua/deadlines.lua).
-- KEYS: 1 writer hash {holder, token} (PEXPIRE = the writer's lease),
-- 2 readers zset (holder -> deadline ms), 3 reader tokens hash,
-- 4 writer intents zset (holder -> deadline ms), 5 token counter.
-- ARGV: op, channel, holder, ttl_ms, kind ('r' read | 'w' write; downgrade
-- passes 'w': the holder's write lease becomes its read lease); force,
-- inspect and list pass the op and the channel alone (list: inspect's rows,
-- then one {'i', holder, 0, 1, ms left, 0} per writer intent); revoke the op,
-- the channel and a token: it removes the writer or the reader holding that
-- token, as a force release would ({1, holder}, or {0, {live tokens}}).
local w, readers, rtokens, intents, counter = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local channel, holder, ttl, kind = ARGV[2], ARGV[3], tonumber(ARGV[4] or 0), ARGV[5]
purge(readers, rtokens)
purge(intents)

local function live_reader(who)
  return redis.call('ZSCORE', readers, who) ~= false
end

if op == 'acquire' then
  local wttl = redis.call('PTTL', w)
  if kind == 'r' then
    local intent = latest(intents)
    if wttl == -2 and not intent then
      local tok = next_token(counter, ttl + LOCK_COUNTER_KEEP_MS)
      redis.call('ZADD', readers, now_ms() + ttl, holder)
      redis.call('HSET', rtokens, holder, fmt(tok))
      keep(readers, {rtokens}, 0)
      return {1, tok, 1}
    end
    return {0, math.max(wttl, intent or -1)}
  end
  local reader = latest(readers)
  if wttl == -2 and not reader then
    local tok = next_token(counter, ttl + LOCK_COUNTER_KEEP_MS)
    redis.call('HSET', w, 'holder', holder, 'token', fmt(tok))
    redis.call('PEXPIRE', w, ttl)
    if redis.call('ZREM', intents, holder) == 1 then keep(intents, {}, 0) end
    return {1, tok, 1}
  end
  if redis.call('HGET', w, 'holder') ~= holder then
    redis.call('ZADD', intents, now_ms() + ttl, holder)
    keep(intents, {}, 0)
  end
  return {0, math.max(wttl, reader or -1)}
elseif op == 'extend' then
  if kind == 'r' then
    if not live_reader(holder) then return 0 end
    redis.call('ZADD', readers, now_ms() + ttl, holder)
    keep(readers, {rtokens}, 0)
    return 1
  end
  if redis.call('HGET', w, 'holder') ~= holder then return 0 end
  redis.call('PEXPIRE', w, ttl)
  return 1
elseif op == 'release' then
  local res, freed = -1, false
  if kind == 'r' then
    if live_reader(holder) then
      redis.call('ZREM', readers, holder)
      redis.call('HDEL', rtokens, holder)
      keep(readers, {rtokens}, 0)
      -- A waiting writer is told too while other readers stay: its last
      -- refusal's retry_in may be this reader's deadline, and the reader
      -- that blocks it now may end sooner (it is told that on its next try).
      res = 0
      freed = redis.call('ZCARD', readers) == 0 or redis.call('EXISTS', intents) == 1
    end
  elseif redis.call('HGET', w, 'holder') == holder then
    redis.call('DEL', w)
    res, freed = 0, true
  end
  if kind == 'w' and redis.call('ZREM', intents, holder) == 1 then
    keep(intents, {}, 0)
    freed = true
  end
  if freed then redis.call('PUBLISH', channel, 'released') end
  return res
elseif op == 'downgrade' then
  -- The holder's write lease becomes its read lease with a new token, the
  -- key never free in between; other writers' intents stay.
  if redis.call('HGET', w, 'holder') ~= holder then return {0} end
  local tok = next_token(counter, ttl + LOCK_COUNTER_KEEP_MS)
  redis.call('DEL', w)
  redis.call('ZADD', readers, now_ms() + ttl, holder)
  redis.call('HSET', rtokens, holder, fmt(tok))
  keep(readers, {rtokens}, 0)
  redis.call('PUBLISH', channel, 'released')
  return {1, tok}
elseif op == 'force' then
  local n = redis.call('DEL', w) + redis.call('ZCARD', readers)
  local had_intents = redis.call('EXISTS', intents)
  redis.call('DEL', readers, rtokens, intents)
  if n + had_intents > 0 then redis.call('PUBLISH', channel, 'forced') end
  return n
elseif op == 'inspect' or op == 'list' then
  local out = {}
  local cur = redis.call('HMGET', w, 'holder', 'token')
  if cur[1] then
    out[#out + 1] = {'w', cur[1], tonumber(cur[2]), 1, redis.call('PTTL', w), 0}
  end
  local rs = redis.call('ZRANGE', readers, 0, -1, 'WITHSCORES')
  for i = 1, #rs, 2 do
    local tok = redis.call('HGET', rtokens, rs[i])
    out[#out + 1] = {'r', rs[i], tonumber(tok or '0'), 1, tonumber(rs[i + 1]) - now_ms(), 0}
  end
  if op == 'list' then
    local is = redis.call('ZRANGE', intents, 0, -1, 'WITHSCORES')
    for i = 1, #is, 2 do
      out[#out + 1] = {'i', is[i], 0, 1, tonumber(is[i + 1]) - now_ms(), 0}
    end
  end
  return out
elseif op == 'revoke' then
  local tok, live = ARGV[3], {}
  local cur = redis.call('HMGET', w, 'holder', 'token')
  if cur[1] then
    if cur[2] == tok then
      redis.call('DEL', w)
      redis.call('PUBLISH', channel, 'forced')
      return {1, cur[1]}
    end
    live[1] = tonumber(cur[2])
  end
  local rs = redis.call('HGETALL', rtokens)
  for i = 1, #rs, 2 do
    if rs[i + 1] == tok then
      redis.call('ZREM', readers, rs[i])
      redis.call('HDEL', rtokens, rs[i])
      keep(readers, {rtokens}, 0)
      redis.call('PUBLISH', channel, 'forced')
      return {1, rs[i]}
    end
    live[#live + 1] = tonumber(rs[i + 1])
  end
  return {0, live}
end
return redis.error_reply('coord: unknown read-write lock operation ' .. tostring(op))
