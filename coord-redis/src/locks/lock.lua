-- Exclusive and reentrant locks, with the fewest redis.call()s and script
-- arguments on the common path (each redis.call() costs the server about
-- 0.5 µs, each KEYS/ARGV entry about 0.1 µs, an array reply more than an
-- integer): acquire MGET, TIME, SET; release GET, DEL, PUBLISH.
--
-- KEYS[1] the lease: a string 'kind|holds|token|holder' (kind 'e' exclusive,
--   'r' reentrant) that expires with the lease (PX = its TTL).
-- KEYS[2] the token counter: written only while the last token granted on the
--   key is ahead of the server clock (the clock stepped back, or the counter
--   was restored ahead), and kept COUNTER_KEEP_MS past that lease. Otherwise
--   the clock alone is ahead of every token granted before, and the key
--   leaves nothing behind once released. Passed only by the operations that
--   use it (acquire, extend).
-- ARGV[1] the operation; the rest depends on it:
--   acquire  KEYS lease, counter  ARGV op, holder, ttl_ms, kind ('e' | 'r')
--   extend   KEYS lease, counter  ARGV op, holder, ttl_ms
--   release  KEYS lease           ARGV op, holder, channel
--   force    KEYS lease           ARGV op, channel
--   inspect  KEYS lease           ARGV op
-- Fencing tokens: FencingToken::next_after, max(counter + 1, TIME in µs).
local l, op = KEYS[1], ARGV[1]
local COUNTER_KEEP_MS = 3600000

-- The fields of a stored lease: kind, holds, token, holder (all strings).
local function parse(cur)
  local kind, holds, tok, who = string.match(cur, '^(%a)|(%d+)|(%d+)|(.*)$')
  if not kind then
    error('coord: unreadable lock state in ' .. l)
  end
  return kind, holds, tok, who
end

if op == 'acquire' then
  local holder, ttl, want = ARGV[2], ARGV[3], ARGV[4]
  -- The lease and the counter in one call.
  local got = redis.call('MGET', l, KEYS[2])
  local cur = got[1]
  if cur then
    local kind, holds, tok, who = parse(cur)
    if who == holder and kind == 'r' and want == 'r' then
      holds = tonumber(holds) + 1
      redis.call('SET', l, 'r|' .. holds .. '|' .. tok .. '|' .. holder, 'PX', ttl)
      return {1, tonumber(tok), holds}
    end
    -- Busy: waiters sleep until the lease's expiry at the latest.
    return {0, redis.call('PTTL', l)}
  end
  local t = redis.call('TIME')
  local token = t[1] * 1000000 + t[2]
  local counter = tonumber(got[2])
  if counter and counter >= token then
    token = counter + 1
    redis.call('SET', KEYS[2], string.format('%d', token), 'PX', ttl + COUNTER_KEEP_MS)
  end
  redis.call('SET', l, want .. '|1|' .. string.format('%d', token) .. '|' .. holder, 'PX', ttl)
  -- A fresh grant replies with its token alone (holds 1).
  return token
elseif op == 'release' then
  local cur = redis.call('GET', l)
  if not cur then return -1 end
  local kind, holds, tok, who = parse(cur)
  if who ~= ARGV[2] then return -1 end
  if holds ~= '1' then
    holds = tonumber(holds) - 1
    redis.call('SET', l, kind .. '|' .. holds .. '|' .. tok .. '|' .. who, 'KEEPTTL')
    return holds
  end
  redis.call('DEL', l)
  redis.call('PUBLISH', ARGV[3], 'released')
  return 0
elseif op == 'extend' then
  local cur = redis.call('GET', l)
  if not cur then return 0 end
  local _, _, tok, who = parse(cur)
  if who ~= ARGV[2] then return 0 end
  redis.call('PEXPIRE', l, ARGV[3])
  -- A counter kept for this lease's token outlives the lease.
  if redis.call('GET', KEYS[2]) == tok then
    redis.call('PEXPIRE', KEYS[2], ARGV[3] + COUNTER_KEEP_MS)
  end
  return 1
elseif op == 'force' then
  if redis.call('DEL', l) == 0 then return 0 end
  redis.call('PUBLISH', ARGV[2], 'forced')
  return 1
elseif op == 'inspect' then
  local cur = redis.call('GET', l)
  if not cur then return {} end
  local kind, holds, tok, who = parse(cur)
  return {{kind, who, tonumber(tok), tonumber(holds), redis.call('PTTL', l), 0}}
end
return redis.error_reply('coord: unknown operation ' .. tostring(op))
