-- Exclusive and reentrant locks (after the prelude), with the fewest
-- redis.call()s and script arguments on the common path (each redis.call()
-- costs the server about 0.5 µs, each KEYS/ARGV entry about 0.1 µs, an array
-- reply more than an integer): acquire GET, then next_token and SET; release
-- GET, DEL, PUBLISH.
--
-- KEYS[1] the lease: a string 'kind|holds|token|holder' (kind 'e' exclusive,
--   'r' reentrant; 'E', 'R' when granted from a fair queue, fair.lua) that
--   expires with the lease (PX = its TTL).
-- KEYS[2] the token counter (next_token), passed by acquire alone. It is
--   written at every grant and outlives the lease by LOCK_COUNTER_KEEP_MS.
--   (Written only while the clock lagged behind it, as an earlier version
--   did, a clock step back after a release would hand out a smaller token.
--   The price: a key per lock for that hour, and a GET and a SET of it more
--   per grant.)
-- ARGV[1] the operation; the rest depends on it:
--   acquire  KEYS lease, counter  ARGV op, holder, ttl_ms, kind ('e' | 'r')
--            (also as fair.lua's queued step, which runs first: a grant
--            calls its `on_grant`)
--   extend   KEYS lease           ARGV op, holder, ttl_ms, kind
--   release  KEYS lease, queue, places (fair.lua's)  ARGV op, holder,
--            channel, kind: a lease granted from the queue that frees the key
--            publishes 'next <holder>' to the first live waiter in line
--            (decision 0041), or 'released' when there is none
--   (extend and release act on the holder's lease of the kind named alone:
--   an exclusive lease is no reentrant one, as at acquire; decision 0066)
--   force    KEYS lease           ARGV op, channel
--   inspect  KEYS lease           ARGV op (also as fair.lua's list, which
--            sets `queued`: a row {'q', '', 0, queued, 0, 0} follows)
--   revoke   KEYS lease           ARGV op, token, channel: deletes the lease
--     only if it carries `token` (a fenced force release, publishing what
--     force does); {1, holder} or {0, {live tokens}}. The counter is left
--     alone, so the next grant's token is larger.
local l = KEYS[1]
-- MAX_REENTRANT_HOLDS: fair.lua's, which runs first.

-- The fields of a stored lease: kind, holds, token, holder (all strings).
local function parse(cur)
  local kind, holds, tok, who = string.match(cur, '^(%a)|(%d+)|(%d+)|(.*)$')
  if not kind then
    error('coord: unreadable lock state in ' .. l)
  end
  return kind, holds, tok, who
end

if op == 'acquire' then
  local holder, ttl, want = ARGV[2], tonumber(ARGV[3]), ARGV[4]
  local cur = redis.call('GET', l)
  if cur then
    local kind, holds, tok, who = parse(cur)
    if who == holder and (kind == 'r' or kind == 'R') and want == 'r' then
      holds = tonumber(holds)
      -- spi::MAX_REENTRANT_HOLDS: refused, changing nothing.
      if holds >= MAX_REENTRANT_HOLDS then return {-2, holds} end
      holds = holds + 1
      redis.call('SET', l, kind .. '|' .. holds .. '|' .. tok .. '|' .. holder, 'PX', ttl)
      if on_grant then on_grant() end
      return {1, tonumber(tok), holds}
    end
    -- Busy: waiters sleep until the lease's expiry at the latest.
    return {0, redis.call('PTTL', l)}
  end
  local token = next_token(KEYS[2], ttl + LOCK_COUNTER_KEEP_MS)
  -- A grant from the queue is marked (upper case) for its release.
  if on_grant then want = string.upper(want) end
  redis.call('SET', l, want .. '|1|' .. fmt(token) .. '|' .. holder, 'PX', ttl)
  if on_grant then on_grant() end
  -- A fresh grant replies with its token alone (holds 1).
  return token
elseif op == 'release' then
  local cur = redis.call('GET', l)
  if not cur then return -1 end
  local kind, holds, tok, who = parse(cur)
  if who ~= ARGV[2] or string.lower(kind) ~= ARGV[4] then return -1 end
  if holds ~= '1' then
    holds = tonumber(holds) - 1
    redis.call('SET', l, kind .. '|' .. holds .. '|' .. tok .. '|' .. who, 'KEEPTTL')
    return holds
  end
  redis.call('DEL', l)
  if kind == 'E' or kind == 'R' then
    -- Granted from the queue: wake the first live waiter in line by name
    -- (places whose deadline passed are dropped by the next queued step).
    local now, line = now_ms(), redis.call('ZRANGE', KEYS[2], 0, 7)
    for i = 1, #line do
      local ends = redis.call('ZSCORE', KEYS[3], line[i])
      if ends and tonumber(ends) > now then
        redis.call('PUBLISH', ARGV[3], 'next ' .. line[i])
        return 0
      end
    end
  end
  redis.call('PUBLISH', ARGV[3], 'released')
  return 0
elseif op == 'extend' then
  local cur = redis.call('GET', l)
  if not cur then return 0 end
  local kind, _, _, who = parse(cur)
  if who ~= ARGV[2] or string.lower(kind) ~= ARGV[4] then return 0 end
  redis.call('PEXPIRE', l, ARGV[3])
  return 1
elseif op == 'force' then
  if redis.call('DEL', l) == 0 then return 0 end
  redis.call('PUBLISH', ARGV[2], 'forced')
  return 1
elseif op == 'inspect' then
  local cur = redis.call('GET', l)
  if not cur then return {} end
  local kind, holds, tok, who = parse(cur)
  local out = {{string.lower(kind), who, tonumber(tok), tonumber(holds), redis.call('PTTL', l), 0}}
  if queued and queued > 0 then out[2] = {'q', '', 0, queued, 0, 0} end
  return out
elseif op == 'revoke' then
  local cur = redis.call('GET', l)
  if not cur then return {0, {}} end
  local _, _, tok, who = parse(cur)
  if tok ~= ARGV[2] then return {0, {tonumber(tok)}} end
  redis.call('DEL', l)
  redis.call('PUBLISH', ARGV[3], 'forced')
  return {1, who}
end
return redis.error_reply('coord: unknown lock operation ' .. tostring(op))
