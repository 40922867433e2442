-- Countdown latches (after the prelude).
-- KEYS: 1 record hash (gen, first, initial, remaining, id: the id of the
-- call that set the generation, past: the ids and generations of the
-- settings before it in the record's life, 'id:gen' separated by spaces,
-- oldest first, SETS_KEPT - 1 at most), PEXPIRE = the
-- latch's life; 2 the participants counted in the generation (set), expiring
-- with the record; 3 generation counter (next_token), kept KEEP_MS past the
-- latch's expiry, so a latch set again after expiring gets a greater
-- generation; 4 the calls that counted the generation (hash: participant
-- -> call id, named calls only), expiring with the record; 5 the same of
-- the generation before it in the record's life (the record's field
-- 'before' names that generation).
-- ARGV: op, channel, then
--   set         count, ttl_ms, id (of the call; '0' for none)
--   count_down  participant, generation ('' for the current one), call id
--               ('0' for none)
--   state, expiry: nothing more.
-- Generations are compared as the decimal strings they are stored and
-- passed as.
local rec, counted, counter, calls, calls_before = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local channel = ARGV[2]
-- The settings known by their call's id (LATCH_SETS_KEPT in the SPI).
local SETS_KEPT = 16

-- The record: {generation, first generation, initial, remaining, ms left}.
local function row()
  local v = redis.call('HMGET', rec, 'gen', 'first', 'initial', 'remaining')
  return {tonumber(v[1]), tonumber(v[2]), tonumber(v[3]), tonumber(v[4]), redis.call('PTTL', rec)}
end

if op == 'set' then
  local count, ttl, id = ARGV[3], tonumber(ARGV[4]), ARGV[5]
  local v = redis.call('HMGET', rec, 'remaining', 'gen', 'id', 'past')
  local remaining, past = v[1] or nil, v[4] or ''
  -- A retry of the call that set this generation or one of the kept
  -- before it: answered as that call was, changing nothing (also at zero).
  if remaining and id ~= '0' then
    if v[3] == id then return {'set', tonumber(v[2])} end
    for pid, pgen in string.gmatch(past, '(%d+):(%d+)') do
      if pid == id then return {'set', tonumber(pgen)} end
    end
  end
  if remaining and tonumber(remaining) > 0 then return {'busy', row()} end
  -- Above the record's generation too (as barriers and memory do): the
  -- counter may have been lost while the record lives.
  local gen = fmt(next_token(counter, ttl + KEEP_MS, tonumber(v[2] or '0')))
  if remaining then
    -- The setting before keeps its id (the oldest past SETS_KEPT - 1 forgotten).
    if v[3] and v[3] ~= '0' then
      past = past == '' and v[3] .. ':' .. v[2] or past .. ' ' .. v[3] .. ':' .. v[2]
      local _, spaces = string.gsub(past, ' ', '')
      for _ = SETS_KEPT, spaces + 1 do
        past = string.sub(past, string.find(past, ' ', 1, true) + 1)
      end
    end
    redis.call('HSET', rec, 'gen', gen, 'initial', count, 'remaining', count, 'id', id, 'past', past,
      'before', v[2])
    redis.call('DEL', counted)
    -- The calls that counted the generation before stay known (their
    -- retries count nothing in this one); those of the one before it go.
    if redis.call('EXISTS', calls) == 1 then
      redis.call('RENAME', calls, calls_before)
      redis.call('PEXPIRE', calls_before, ttl)
    else
      redis.call('DEL', calls_before)
    end
  else
    -- A new record begins from nothing: who counted a record that is gone
    -- (its set outlives it only when the record alone was evicted) does
    -- not count in this one.
    redis.call('DEL', counted, calls, calls_before)
    redis.call('HSET', rec, 'gen', gen, 'first', gen, 'initial', count, 'remaining', count, 'id', id)
  end
  redis.call('PEXPIRE', rec, ttl)
  redis.call('PUBLISH', channel, 'set')
  return {'set', tonumber(gen)}
elseif op == 'count_down' then
  local p, g, call = ARGV[3], ARGV[4], ARGV[5]
  local v = redis.call('HMGET', rec, 'gen', 'remaining', 'before')
  local gen, remaining, before = v[1], tonumber(v[2]), v[3]
  if not gen then return {'absent'} end
  -- The retry of this participant's count of the generation before:
  -- answered as that count was, at 0, counting nothing.
  if call ~= '0' and before and (g == '' or g == before)
      and redis.call('HGET', calls_before, p) == call then
    return {'already', tonumber(before), 0}
  end
  if g ~= '' and g ~= gen then return {'stale', tonumber(gen)} end
  if remaining == 0 or redis.call('SISMEMBER', counted, p) == 1 then
    return {'already', tonumber(gen), remaining}
  end
  redis.call('SADD', counted, p)
  if call ~= '0' then redis.call('HSET', calls, p, call) end
  local left = redis.call('PTTL', rec)
  if left > 0 then
    redis.call('PEXPIRE', counted, left)
    if call ~= '0' then redis.call('PEXPIRE', calls, left) end
  end
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
