-- Exclusive and reentrant locks, with the fewest redis.call()s on the common
-- path: acquire GET, TIME, GET, SET; release GET, DEL, PUBLISH.
--
-- KEYS[1] the lease: a string 'kind|holds|token|holder' (kind 'e' exclusive,
--   'r' reentrant) that expires with the lease (PX = its TTL).
-- KEYS[2] the token counter: written only while the last token granted on the
--   key is ahead of the server clock (the clock stepped back, or the counter
--   was restored ahead), and kept COUNTER_KEEP_MS past that lease. Otherwise
--   the clock alone is ahead of every token granted before, and the key
--   leaves nothing behind once released.
-- ARGV: op, channel, holder, ttl_ms, kind.
-- Fencing tokens: FencingToken::next_after, max(counter + 1, TIME in µs).
local l, op, holder = KEYS[1], ARGV[1], ARGV[3]
local COUNTER_KEEP_MS = 3600000

local cur = redis.call('GET', l)
local kind, holds, tok, who
if cur then
  kind, holds, tok, who = string.match(cur, '^(%a)|(%d+)|(%d+)|(.*)$')
  if not kind then
    return redis.error_reply('coord: unreadable lock state in ' .. l)
  end
end

if op == 'acquire' then
  local want = ARGV[5]
  if cur then
    if who == holder and kind == 'r' and want == 'r' then
      holds = tonumber(holds) + 1
      redis.call('SET', l, 'r|' .. holds .. '|' .. tok .. '|' .. holder, 'PX', ARGV[4])
      return {1, tonumber(tok), holds}
    end
    return {0, redis.call('PTTL', l)}
  end
  local t = redis.call('TIME')
  local token = t[1] * 1000000 + t[2]
  local counter = redis.call('GET', KEYS[2])
  if counter and tonumber(counter) >= token then
    token = tonumber(counter) + 1
    redis.call('SET', KEYS[2], string.format('%d', token), 'PX', tonumber(ARGV[4]) + COUNTER_KEEP_MS)
  end
  redis.call('SET', l, string.format('%s|1|%d|%s', want, token, holder), 'PX', ARGV[4])
  return {1, token, 1}
elseif op == 'release' then
  if not cur or who ~= holder then return -1 end
  holds = tonumber(holds)
  if holds > 1 then
    redis.call('SET', l, kind .. '|' .. (holds - 1) .. '|' .. tok .. '|' .. holder, 'KEEPTTL')
    return holds - 1
  end
  redis.call('DEL', l)
  redis.call('PUBLISH', ARGV[2], 'released')
  return 0
elseif op == 'extend' then
  if not cur or who ~= holder then return 0 end
  redis.call('PEXPIRE', l, ARGV[4])
  -- A counter kept for this lease's token outlives the lease.
  if redis.call('GET', KEYS[2]) == tok then
    redis.call('PEXPIRE', KEYS[2], tonumber(ARGV[4]) + COUNTER_KEEP_MS)
  end
  return 1
elseif op == 'force' then
  if not cur then return 0 end
  redis.call('DEL', l)
  redis.call('PUBLISH', ARGV[2], 'forced')
  return 1
elseif op == 'inspect' then
  if not cur then return {} end
  return {{kind, who, tonumber(tok), tonumber(holds), redis.call('PTTL', l), 0}}
end
return redis.error_reply('coord: unknown operation ' .. tostring(op))
