-- Run-once jobs (after the prelude).
-- KEYS: 1 run (string: holder; PEXPIRE = the run's lease), 2 attempts
-- (string counter), 3 finished marker (PX = retention), 4 the job's token
-- counter (next_token; shared by the job's occurrences), 5 the running
-- attempt's token (string; PEXPIRE = the run's lease, like KEYS[1]).
-- ARGV: op, channel, then
--   begin, extend  holder, ttl_ms
--   end            holder, retention_ms (0: not finished)
--   give_back      holder: ends the run unfinished, as end with no
--                  retention, and takes its attempt back (its begin got
--                  no answer: no body ran).
--   expiry, run, state: nothing more (run: {holder, token, ms left}, or
--                  {}; state, which writes nothing: {2} finished, {1, ms
--                  left} running, {0} neither).
--   revoke         token: ends the run carrying it as a failed run (as end
--                  with no retention); {1, holder} or {0, {live token}}.
local r, attempts, finished, counter, run_token = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local channel, holder = ARGV[2], ARGV[3]

-- Makes the job's token counter live at least `ms` more (never less: it
-- is shared by the job's occurrences, whose leases differ).
local function keep_counter(ms)
  if redis.call('PTTL', counter) < ms then redis.call('PEXPIRE', counter, ms) end
end

if op == 'begin' then
  local ttl = tonumber(ARGV[4])
  if redis.call('EXISTS', finished) == 1 then return {2} end
  local left = redis.call('PTTL', r)
  if left ~= -2 then return {1, math.max(left, 0)} end
  local attempt = redis.call('INCR', attempts)
  redis.call('PEXPIRE', attempts, ttl + KEEP_MS)
  local tok = next_token(counter, ttl + KEEP_MS)
  redis.call('SET', r, holder, 'PX', ttl)
  redis.call('SET', run_token, fmt(tok), 'PX', ttl)
  return {0, tok, attempt}
elseif op == 'extend' then
  local ttl = tonumber(ARGV[4])
  if redis.call('GET', r) ~= holder then return 0 end
  redis.call('PEXPIRE', r, ttl)
  redis.call('PEXPIRE', run_token, ttl)
  redis.call('PEXPIRE', attempts, ttl + KEEP_MS)
  keep_counter(ttl + KEEP_MS)
  return 1
elseif op == 'end' or op == 'give_back' then
  local retention = tonumber(ARGV[4] or '0')
  if redis.call('GET', r) ~= holder then return 0 end
  redis.call('DEL', r, run_token)
  -- The run is live, so its attempt is counted and its count kept.
  if op == 'give_back' and (tonumber(redis.call('GET', attempts)) or 0) > 0 then
    redis.call('DECR', attempts)
  end
  if retention > 0 then
    redis.call('SET', finished, '1', 'PX', retention)
    redis.call('PEXPIRE', attempts, retention + KEEP_MS)
    keep_counter(retention + KEEP_MS)
  end
  redis.call('PUBLISH', channel, 'ended')
  return 1
elseif op == 'state' then
  if redis.call('EXISTS', finished) == 1 then return {2} end
  local left = redis.call('PTTL', r)
  if left ~= -2 then return {1, math.max(left, 0)} end
  return {0}
elseif op == 'expiry' then
  return redis.call('PTTL', r)
elseif op == 'run' then
  local who = redis.call('GET', r)
  if not who then return {} end
  return {who, tonumber(redis.call('GET', run_token) or '0'), redis.call('PTTL', r)}
elseif op == 'revoke' then
  local who = redis.call('GET', r)
  if not who then return {0, {}} end
  local tok = redis.call('GET', run_token)
  if tok ~= ARGV[3] then return {0, {tonumber(tok or '0')}} end
  redis.call('DEL', r, run_token)
  redis.call('PUBLISH', channel, 'ended')
  return {1, who}
end
return redis.error_reply('coord: unknown job operation ' .. tostring(op))
