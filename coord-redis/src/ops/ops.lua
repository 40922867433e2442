-- Instance presence (after the prelude and lua/deadlines.lua).
-- KEYS: 1 deadlines zset (instance -> expiry, server ms), 2 info hash
-- (instance -> 'since_us|pid|host_len|host metadata'), 3 names zset (every
-- instance with score 0: the lexical order `instances` pages by; a deadline
-- moves at every refresh, so it cannot order a walk).
-- ARGV: op, then
--   announce   instance, ttl_ms, 'pid|host_len|host metadata'
--   withdraw   instance
--   presence   instance…          ({} or {info, ms left} per instance)
--   instances  after ('' first), limit  ({names read, {{name, info, ms left}…}, last name})
local dl, info, names = KEYS[1], KEYS[2], KEYS[3]

-- The instance's deadline if its presence is live, else nil.
local function live(inst)
  local s = redis.call('ZSCORE', dl, inst)
  if s and tonumber(s) > now_ms() then return tonumber(s) end
  return nil
end

-- The instance's info entry and deadline if its presence is live, else
-- nil. An instance whose info entry is gone (the hash evicted under
-- maxmemory) is gone as after an expiry (decision 0064), and dropped here:
-- no call beyond the HGET a live presence is read with, two ZREMs when
-- the entry is missing.
local function present(inst)
  local until_ms = live(inst)
  if not until_ms then return nil end
  local v = redis.call('HGET', info, inst)
  if v then return v, until_ms end
  redis.call('ZREM', dl, inst)
  redis.call('ZREM', names, inst)
  return nil
end

if op == 'announce' then
  local inst, ttl = ARGV[2], tonumber(ARGV[3])
  local since
  if live(inst) then
    since = string.match(redis.call('HGET', info, inst) or '', '^(%d+)|')
  end
  -- Up to 100 expired presences go at each announcement.
  local gone = redis.call('ZRANGEBYSCORE', dl, '-inf', now_ms(), 'LIMIT', 0, 100)
  if #gone > 0 then
    redis.call('ZREM', dl, unpack(gone))
    redis.call('HDEL', info, unpack(gone))
    redis.call('ZREM', names, unpack(gone))
  end
  redis.call('ZADD', dl, now_ms() + ttl, inst)
  redis.call('HSET', info, inst, (since or fmt(now_us())) .. '|' .. ARGV[4])
  redis.call('ZADD', names, 0, inst)
  keep(dl, {info, names}, 0)
  return 1
elseif op == 'withdraw' then
  local was = live(ARGV[2])
  redis.call('ZREM', dl, ARGV[2])
  local had = redis.call('HDEL', info, ARGV[2]) == 1
  redis.call('ZREM', names, ARGV[2])
  return (was and had) and 1 or 0
elseif op == 'presence' then
  local out = {}
  for j = 2, #ARGV do
    local v, until_ms = present(ARGV[j])
    if v then
      out[#out + 1] = {v, until_ms - now_ms()}
    else
      out[#out + 1] = {}
    end
  end
  return out
elseif op == 'instances' then
  local from = '-'
  if ARGV[2] ~= '' then from = '(' .. ARGV[2] end
  local ns = redis.call('ZRANGEBYLEX', names, from, '+', 'LIMIT', 0, tonumber(ARGV[3]))
  local rows = {}
  for j = 1, #ns do
    local v, until_ms = present(ns[j])
    if v then rows[#rows + 1] = {ns[j], v, until_ms - now_ms()} end
  end
  return {#ns, rows, ns[#ns] or ''}
end
return redis.error_reply('coord: unknown operations operation ' .. tostring(op))
