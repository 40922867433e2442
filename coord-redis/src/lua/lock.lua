-- Exclusive and reentrant locks.
-- KEYS: 1 lease, a string 'kind|holds|token|holder' with the lease's TTL
-- (kind 'e' exclusive | 'r' reentrant), 2 token counter.
-- ARGV: op, channel, holder, ttl_ms, kind.
local l, counter = KEYS[1], KEYS[2]
local holder, ttl = ARGV[3], tonumber(ARGV[4])

local function parse(v)
  local kind, holds, tok, who = string.match(v, '^(%a)|(%d+)|(%d+)|(.*)$')
  return kind, tonumber(holds), tonumber(tok), who
end

local function store(kind, holds, tok, ...)
  redis.call('SET', l, string.format('%s|%d|%d|%s', kind, holds, tok, holder), ...)
end

if op == 'acquire' then
  local kind = ARGV[5]
  local cur = redis.call('GET', l)
  if cur then
    local k, holds, tok, who = parse(cur)
    if kind == 'r' and k == 'r' and who == holder then
      store('r', holds + 1, tok, 'PX', ttl)
      return {1, tok, holds + 1}
    end
    return {0, redis.call('PTTL', l)}
  end
  local tok = next_token(counter, ttl)
  store(kind, 1, tok, 'PX', ttl)
  return {1, tok, 1}
end
if op == 'force' then
  local n = redis.call('DEL', l)
  if n > 0 then notify('forced') end
  return n
end
local cur = redis.call('GET', l)
local k, holds, tok, who
if cur then k, holds, tok, who = parse(cur) end
if op == 'extend' then
  if who ~= holder then return 0 end
  redis.call('PEXPIRE', l, ttl)
  return 1
elseif op == 'release' then
  if who ~= holder then return -1 end
  if holds > 1 then
    store(k, holds - 1, tok, 'KEEPTTL')
    return holds - 1
  end
  redis.call('DEL', l)
  notify('released')
  return 0
elseif op == 'inspect' then
  if not cur then return {} end
  return {{k, who, tok, holds, redis.call('PTTL', l), 0}}
end
return redis.error_reply('coord: unknown operation ' .. tostring(op))
