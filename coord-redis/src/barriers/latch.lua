-- Countdown latches (after the prelude).
-- KEYS: 1 record hash (gen, first, initial, remaining, id: the id of the
-- call that set the generation), PEXPIRE = the
-- latch's life; 2 the participants counted in the generation (set), expiring
-- with the record; 3 generation counter (next_token), kept KEEP_MS past the
-- latch's expiry, so a latch set again after expiring gets a greater
-- generation.
-- ARGV: op, channel, then
--   set         count, ttl_ms, id (of the call; '0' for none)
--   count_down  participant, generation ('' for the current one)
--   state, expiry: nothing more.
-- Generations are compared as the decimal strings they are stored and
-- passed as.
local rec, counted, counter = KEYS[1], KEYS[2], KEYS[3]
local channel = ARGV[2]

-- The record: {generation, first generation, initial, remaining, ms left}.
local function row()
  local v = redis.call('HMGET', rec, 'gen', 'first', 'initial', 'remaining')
  return {tonumber(v[1]), tonumber(v[2]), tonumber(v[3]), tonumber(v[4]), redis.call('PTTL', rec)}
end

if op == 'set' then
  local count, ttl, id = ARGV[3], tonumber(ARGV[4]), ARGV[5]
  local v = redis.call('HMGET', rec, 'remaining', 'gen', 'id')
  local remaining = v[1] or nil
  -- A retry of the call that set this generation: answered as that call
  -- was, changing nothing (also at zero).
  if remaining and id ~= '0' and v[3] == id then return {'set', tonumber(v[2])} end
  if remaining and tonumber(remaining) > 0 then return {'busy', row()} end
  -- Above the record's generation too (as barriers and memory do): the
  -- counter may have been lost while the record lives.
  local gen = fmt(next_token(counter, ttl + KEEP_MS, tonumber(v[2] or '0')))
  if remaining then
    redis.call('HSET', rec, 'gen', gen, 'initial', count, 'remaining', count, 'id', id)
    redis.call('DEL', counted)
  else
    redis.call('HSET', rec, 'gen', gen, 'first', gen, 'initial', count, 'remaining', count, 'id', id)
  end
  redis.call('PEXPIRE', rec, ttl)
  redis.call('PUBLISH', channel, 'set')
  return {'set', tonumber(gen)}
elseif op == 'count_down' then
  local p, g = ARGV[3], ARGV[4]
  local v = redis.call('HMGET', rec, 'gen', 'remaining')
  local gen, remaining = v[1], tonumber(v[2])
  if not gen then return {'absent'} end
  if g ~= '' and g ~= gen then return {'stale', tonumber(gen)} end
  if remaining == 0 or redis.call('SISMEMBER', counted, p) == 1 then
    return {'already', tonumber(gen), remaining}
  end
  redis.call('SADD', counted, p)
  local left = redis.call('PTTL', rec)
  if left > 0 then redis.call('PEXPIRE', counted, left) end
  remaining = redis.call('HINCRBY', rec, 'remaining', -1)
  if remaining == 0 then redis.call('PUBLISH', channel, 'open') end
  return {'counted', tonumber(gen), remaining}
elseif op == 'state' then
  if redis.call('EXISTS', rec) == 0 then return {} end
  return row()
elseif op == 'expiry' then
  -- Milliseconds until the latch expires, negative when there is none.
  return redis.call('PTTL', rec)
end
return redis.error_reply('coord: unknown latch operation ' .. tostring(op))
