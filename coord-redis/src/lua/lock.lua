-- Exclusive and reentrant locks.
-- KEYS: 1 lease hash {holder, token, holds, kind}, 2 token counter.
-- ARGV: op, channel, holder, ttl_ms, kind ('e' exclusive | 'r' reentrant).
local h, counter = KEYS[1], KEYS[2]
local holder, ttl = ARGV[3], tonumber(ARGV[4])

if op == 'acquire' then
  local kind = ARGV[5]
  local cur = redis.call('HMGET', h, 'holder', 'token', 'holds', 'kind')
  if cur[1] then
    if kind == 'r' and cur[4] == 'r' and cur[1] == holder then
      local holds = redis.call('HINCRBY', h, 'holds', 1)
      redis.call('PEXPIRE', h, ttl)
      return {1, tonumber(cur[2]), holds}
    end
    return {0, redis.call('PTTL', h)}
  end
  local tok = next_token(counter, ttl)
  redis.call('HSET', h, 'holder', holder, 'token', string.format('%d', tok), 'holds', 1, 'kind', kind)
  redis.call('PEXPIRE', h, ttl)
  return {1, tok, 1}
elseif op == 'extend' then
  if redis.call('HGET', h, 'holder') == holder then
    redis.call('PEXPIRE', h, ttl)
    return 1
  end
  return 0
elseif op == 'release' then
  if redis.call('HGET', h, 'holder') ~= holder then return -1 end
  local holds = redis.call('HINCRBY', h, 'holds', -1)
  if holds > 0 then return holds end
  redis.call('DEL', h)
  notify('released')
  return 0
elseif op == 'force' then
  local n = redis.call('DEL', h)
  if n > 0 then notify('forced') end
  return n
elseif op == 'inspect' then
  local cur = redis.call('HMGET', h, 'holder', 'token', 'holds', 'kind')
  if not cur[1] then return {} end
  return {{cur[4], cur[1], tonumber(cur[2]), tonumber(cur[3]), redis.call('PTTL', h), 0}}
end
return redis.error_reply('coord: unknown operation ' .. tostring(op))
