-- Several exclusive locks in one step (after the prelude): the layout of
-- lock.lua, for every lock of the set at once. A standalone server holds
-- every key; a Redis Cluster would need every key in one slot (issue 20).
--
-- KEYS[2i-1] lock i's lease ('e|1|token|holder', PX = its TTL, as lock.lua
--   writes it: afterwards it is an ordinary lock, extended, released,
--   inspected and force released by lock.lua).
-- KEYS[2i]   lock i's token counter (next_token, as lock.lua draws it).
-- ARGV       op ('acquire_all'), holder, ttl_ms
-- Reply: {1, token_1, ..., token_n} when every lock was free and is now
-- granted; {0, i, pttl} (i 0-based) naming the first lock held, nothing
-- written.
if op == 'acquire_all' then
  local holder, ttl = ARGV[2], tonumber(ARGV[3])
  local n = #KEYS / 2
  for i = 1, n do
    local pttl = redis.call('PTTL', KEYS[2 * i - 1])
    if pttl ~= -2 then
      return {0, i - 1, pttl}
    end
  end
  local reply = {1}
  for i = 1, n do
    local tok = next_token(KEYS[2 * i], ttl + LOCK_COUNTER_KEEP_MS)
    redis.call('SET', KEYS[2 * i - 1], 'e|1|' .. fmt(tok) .. '|' .. holder, 'PX', ttl)
    reply[i + 1] = tok
  end
  return reply
end
return redis.error_reply('coord: unknown multi-lock operation ' .. tostring(op))
