-- Counting semaphores, each permit its own lease (after the prelude and
-- lua/deadlines.lua).
-- KEYS: 1 permits zset (holder -> deadline ms), 2 permit tokens hash,
-- 3 limit (string), 4 token counter.
-- ARGV: op, channel, holder, ttl_ms, limit; force and inspect pass the op
-- and the channel alone; revoke the op, the channel and a token: it removes
-- the permit holding that token, as a release would ({1, holder}, or
-- {0, {live tokens}}).
local permits, ptokens, limit_key, counter = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local channel, holder, ttl = ARGV[2], ARGV[3], tonumber(ARGV[4] or 0)
purge(permits, ptokens)

local function live(who)
  return redis.call('ZSCORE', permits, who) ~= false
end

if op == 'acquire' then
  local limit = tonumber(ARGV[5])
  local count = redis.call('ZCARD', permits)
  local stored = tonumber(redis.call('GET', limit_key) or '0')
  if count > 0 and stored ~= limit then return {-1, stored} end
  if count < limit or live(holder) then
    local tok = next_token(counter, ttl + LOCK_COUNTER_KEEP_MS)
    redis.call('ZADD', permits, now_ms() + ttl, holder)
    redis.call('HSET', ptokens, holder, fmt(tok))
    redis.call('SET', limit_key, limit)
    keep(permits, {ptokens, limit_key}, 0)
    return {1, tok, 1}
  end
  return {0, earliest(permits)}
elseif op == 'extend' then
  if not live(holder) then return 0 end
  redis.call('ZADD', permits, now_ms() + ttl, holder)
  keep(permits, {ptokens, limit_key}, 0)
  return 1
elseif op == 'release' then
  if not live(holder) then return -1 end
  redis.call('ZREM', permits, holder)
  redis.call('HDEL', ptokens, holder)
  keep(permits, {ptokens, limit_key}, 0)
  redis.call('PUBLISH', channel, 'released')
  return 0
elseif op == 'force' then
  local n = redis.call('ZCARD', permits)
  redis.call('DEL', permits, ptokens, limit_key)
  if n > 0 then redis.call('PUBLISH', channel, 'forced') end
  return n
elseif op == 'inspect' then
  local out = {}
  local limit = tonumber(redis.call('GET', limit_key) or '0')
  local ps = redis.call('ZRANGE', permits, 0, -1, 'WITHSCORES')
  for i = 1, #ps, 2 do
    local tok = redis.call('HGET', ptokens, ps[i])
    out[#out + 1] = {'p', ps[i], tonumber(tok or '0'), 1, tonumber(ps[i + 1]) - now_ms(), limit}
  end
  return out
elseif op == 'revoke' then
  local live = {}
  local ts = redis.call('HGETALL', ptokens)
  for i = 1, #ts, 2 do
    if ts[i + 1] == ARGV[3] then
      redis.call('ZREM', permits, ts[i])
      redis.call('HDEL', ptokens, ts[i])
      keep(permits, {ptokens, limit_key}, 0)
      redis.call('PUBLISH', channel, 'forced')
      return {1, ts[i]}
    end
    live[#live + 1] = tonumber(ts[i + 1])
  end
  return {0, live}
end
return redis.error_reply('coord: unknown semaphore operation ' .. tostring(op))
