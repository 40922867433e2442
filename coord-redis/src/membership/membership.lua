-- Membership groups (after the prelude, lua/deadlines.lua and group.lua).
-- KEYS: 1 members zset, 2 member info hash, 3 seq (see group.lua).
-- ARGV: op, channel, then
--   join       holder, ttl_ms, metadata
--   heartbeat  holder, ttl_ms
--   leave      holder
--   members, expiry: nothing more.
local m, i, s, channel = KEYS[1], KEYS[2], KEYS[3], ARGV[2]

if op == 'expiry' then
  -- Milliseconds until the earliest member deadline, -2 when none.
  return earliest(m) or -2
end
purge_group(m, i, s, channel)

if op == 'join' then
  local holder, ttl, meta = ARGV[3], tonumber(ARGV[4]), ARGV[5]
  local joined
  if redis.call('ZSCORE', m, holder) then
    joined = string.match(redis.call('HGET', i, holder) or '', '^(%d+)|')
    -- Its info lost: gone, and this join a new one.
    if not joined then drop_unlisted(m, i, s, channel, {holder}) end
  end
  if not joined then redis.call('INCR', s) end
  redis.call('ZADD', m, now_ms() + ttl, holder)
  redis.call('HSET', i, holder, (joined or fmt(now_us())) .. '|' .. meta)
  keep_group(m, i, s)
  redis.call('PUBLISH', channel, 'joined')
  return 1
elseif op == 'heartbeat' then
  local holder = ARGV[3]
  if not redis.call('ZSCORE', m, holder) then return 0 end
  if redis.call('HEXISTS', i, holder) == 0 then
    drop_unlisted(m, i, s, channel, {holder})
    return 0
  end
  redis.call('ZADD', m, now_ms() + tonumber(ARGV[4]), holder)
  keep_group(m, i, s)
  return 1
elseif op == 'leave' then
  local holder = ARGV[3]
  if redis.call('ZREM', m, holder) == 0 then return 0 end
  redis.call('HDEL', i, holder)
  redis.call('INCR', s)
  keep_group(m, i, s)
  redis.call('PUBLISH', channel, 'left')
  return 1
elseif op == 'members' then
  local rows, unlisted = {}, {}
  local zs = redis.call('ZRANGE', m, 0, -1, 'WITHSCORES')
  for j = 1, #zs, 2 do
    local joined, meta = string.match(redis.call('HGET', i, zs[j]) or '', '^(%d+)|(.*)$')
    if joined then
      rows[#rows + 1] = {zs[j], tonumber(joined), meta, tonumber(zs[j + 1]) - now_ms()}
    else
      unlisted[#unlisted + 1] = zs[j]
    end
  end
  if #unlisted > 0 then drop_unlisted(m, i, s, channel, unlisted) end
  return {tonumber(redis.call('GET', s) or '0'), rows}
end
return redis.error_reply('coord: unknown group operation ' .. tostring(op))
