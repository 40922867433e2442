-- Shared values (after the prelude). One script, the operation an argument;
-- the rules are those of coord-api's spi/state.rs, numbered there (1-8).
-- KEYS: 1 meta hash (head: the latest version; floor: the highest version
-- the log may lack), 2 version counter (next_token), 3 entries hash (key ->
-- '<version>:<value>'), 4 deadlines zset (key -> deadline, server ms), 5
-- log zset (change -> its version), 6 calls zset (the call of a put that
-- named one -> the version it made, while that is in the log). The
-- channel is KEYS[1] with its last letter made 'c' (same slot).
-- ARGV: op, then
--   get      key
--   put      key, value, expect ('a' any | 'n' absent | 'v' version),
--            expected version, ttl ms ('0': none), call ('0': none)
--   delete   key, expect, expected version
--   changes  select ('k' key | 'p' prefix), key or prefix, after, limit
--
-- A logged change is the member '<version>:<kind>:<key length>:<key><value>'
-- (kind 'p' put, 'd' deleted, 'x' expired; the value only for a put),
-- scored by its version (below 2^53: exact in a double).
--
-- A compare-and-set that loses a race is the common step under contention:
-- it costs one look at the deadlines, one at the calls and one HGET (the
-- meta hash and the clock are read only by a step that needs them).
local meta, counter, entries, deadlines, log, calls =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]

local MAX_SPACE_KEYS = 1000
local CHANGES_KEPT = 1000

-- The step every loser of a compare-and-set race takes, inline, before any
-- helper is made (each closure made costs on every run): with no deadline
-- in the space (nothing to sweep), a put or delete whose expectation fails
-- answers the current entry at once (a put naming a call the space
-- remembers does not: rule 3, below; every write of a client names one).
local timed = redis.call('ZRANGE', deadlines, 0, 0, 'WITHSCORES')[2] ~= nil
if not timed and (op == 'delete' or (op == 'put'
    and (ARGV[7] == '0' or not redis.call('ZSCORE', calls, ARGV[7])))) then
  local e = op == 'put' and 4 or 3
  local expect, expected = ARGV[e], ARGV[e + 1]
  if expect ~= 'a' then
    local stored = redis.call('HGET', entries, ARGV[2])
    if expect == 'n' then
      if stored then
        local c = string.find(stored, ':', 1, true)
        return {0, tonumber(string.sub(stored, 1, c - 1)), string.sub(stored, c + 1), -1}
      end
    elseif not stored then
      return {0, 0}
    elseif string.sub(stored, 1, #expected + 1) ~= expected .. ':' then
      local c = string.find(stored, ':', 1, true)
      return {0, tonumber(string.sub(stored, 1, c - 1)), string.sub(stored, c + 1), -1}
    end
  end
end

-- The head and floor, read on first use. The log holds every change after
-- the floor up to the head, so its newest is the head: when it is not, the
-- log was lost without the meta hash (an eviction: each lives a day past
-- the last change), and with it every change up to the head, which the
-- floor is raised to (rule 5), so that a reader from before is told of a
-- gap. A meta hash lost without the log leaves a log without a head: it
-- goes when the next step births a new one (rule 2).
local head, floor
local function read_meta()
  if not head then
    local m = redis.call('HMGET', meta, 'head', 'floor')
    head, floor = tonumber(m[1] or '0'), tonumber(m[2] or '0')
    if head == 0 then
      redis.call('DEL', log, calls)
    elseif head > floor then
      local newest = redis.call('ZRANGE', log, -1, -1, 'WITHSCORES')[2]
      if tonumber(newest) ~= head then
        floor = head
        redis.call('HSET', meta, 'floor', fmt(floor))
      end
    end
  end
end
local logged = false

-- Rule 2 and 5: logs `kind` of `key` (with `value` for a put) with the next
-- version; returns it.
local function append(key, kind, value)
  read_meta()
  local version = next_token(counter, KEEP_MS, head)
  if head == 0 then
    -- The log's birth: nothing before this change is known.
    floor = version - 1
    redis.call('HSET', meta, 'floor', fmt(floor))
  end
  head = version
  redis.call('HSET', meta, 'head', fmt(head))
  local member = fmt(version) .. ':' .. kind .. ':' .. #key .. ':' .. key .. (value or '')
  redis.call('ZADD', log, version, member)
  if redis.call('ZCARD', log) > CHANGES_KEPT then
    local first = redis.call('ZRANGE', log, 0, 0, 'WITHSCORES')
    floor = math.max(floor, tonumber(first[2]))
    redis.call('HSET', meta, 'floor', fmt(floor))
    redis.call('ZREMRANGEBYRANK', log, 0, 0)
  end
  logged = true
  return version
end

-- Rule 1: every entry whose deadline passed goes, as an expiry. The clock
-- is read only when some entry has a deadline.
if timed then
  local due = redis.call('ZRANGEBYSCORE', deadlines, '-inf', now_ms())
  for _, key in ipairs(due) do
    redis.call('HDEL', entries, key)
    redis.call('ZREM', deadlines, key)
    append(key, 'x')
  end
  timed = redis.call('EXISTS', deadlines) == 1
end

-- Milliseconds left of `key`'s TTL, or -1.
local function left(key)
  if not timed then return -1 end
  local at = redis.call('ZSCORE', deadlines, key)
  if at then return math.max(0, tonumber(at) - now_ms()) end
  return -1
end

-- The version and value of a stored entry.
local function split(stored)
  local c = string.find(stored, ':', 1, true)
  return tonumber(string.sub(stored, 1, c - 1)), string.sub(stored, c + 1)
end

-- `{version, value, ms left}` of `key` stored as `stored`, or {0}.
local function entry(key, stored)
  if not stored then return {0} end
  local version, value = split(stored)
  return {version, value, left(key)}
end

-- Whether an entry stored as `stored` (false: absent, as HGET answers in a
-- script) meets the expectation.
local function met(expect, expected, stored)
  if expect == 'a' then return true end
  if expect == 'n' then return not stored end
  if not stored then return false end
  return string.sub(stored, 1, #expected + 1) == expected .. ':'
end

local function done(reply)
  if logged then
    redis.call('PEXPIRE', meta, KEEP_MS)
    redis.call('PEXPIRE', log, KEEP_MS)
    redis.call('PEXPIRE', calls, KEEP_MS)
    redis.call('PUBLISH', string.sub(meta, 1, -2) .. 'c', 'changed')
  end
  return reply
end

if op == 'get' then
  local key = ARGV[2]
  return done(entry(key, redis.call('HGET', entries, key)))
end

if op == 'put' or op == 'delete' then
  local key = ARGV[2]
  local expect, expected
  if op == 'put' then expect, expected = ARGV[4], ARGV[5] else expect, expected = ARGV[3], ARGV[4] end
  local call = op == 'put' and ARGV[7] or '0'
  if call ~= '0' then
    -- Rule 3: the retry of a put that was applied answers its version,
    -- while its change is in the log (the record is trimmed only by the
    -- next put naming a call, so one above the floor is the test).
    local made = tonumber(redis.call('ZSCORE', calls, call))
    if made then
      read_meta()
      if made > floor then return done({1, made}) end
    end
  end
  local stored = redis.call('HGET', entries, key)
  if not met(expect, expected, stored) then
    local now_entry = entry(key, stored)
    table.insert(now_entry, 1, 0)
    return done(now_entry)
  end
  if op == 'delete' then
    if not stored then return done({3}) end
    redis.call('HDEL', entries, key)
    if timed then redis.call('ZREM', deadlines, key) end
    return done({1, append(key, 'd')})
  end
  local value, ttl = ARGV[3], tonumber(ARGV[6])
  if not stored and redis.call('HLEN', entries) >= MAX_SPACE_KEYS then
    return done({2})
  end
  local version = append(key, 'p', value)
  redis.call('HSET', entries, key, fmt(version) .. ':' .. value)
  if call ~= '0' then
    -- Remembered while its change is in the log (rule 5).
    redis.call('ZADD', calls, version, call)
    redis.call('ZREMRANGEBYSCORE', calls, '-inf', floor)
  end
  if ttl > 0 then
    redis.call('ZADD', deadlines, now_ms() + ttl, key)
  elseif timed then
    redis.call('ZREM', deadlines, key)
  end
  return done({1, version})
end

if op == 'changes' then
  local kind, sel, after, limit = ARGV[2], ARGV[3], tonumber(ARGV[4]), tonumber(ARGV[5])
  local function matches(key)
    if kind == 'k' then return key == sel end
    return string.sub(key, 1, #sel) == sel
  end
  -- The earliest deadline of a matching entry.
  local next_ms = -1
  if kind == 'k' then
    next_ms = left(sel)
  elseif timed then
    local all = redis.call('ZRANGE', deadlines, 0, -1, 'WITHSCORES')
    for i = 1, #all, 2 do
      if matches(all[i]) then
        next_ms = math.max(0, tonumber(all[i + 1]) - now_ms())
        break
      end
    end
  end
  read_meta()
  if head == 0 then
    -- A read of a space with no record births its log, empty: a reader
    -- told of the gap then reads on from here without another one.
    head = next_token(counter, KEEP_MS, 0)
    floor = head
    redis.call('HSET', meta, 'head', fmt(head), 'floor', fmt(floor))
    redis.call('PEXPIRE', meta, KEEP_MS)
  end
  local out = {0, head, next_ms, -1}
  if after < floor or after > head then
    out[1] = 1
    local oldest = redis.call('ZRANGE', log, 0, 0, 'WITHSCORES')
    if oldest[2] then out[4] = tonumber(oldest[2]) end
    -- In no order: the client sorts them by their bytes (Lua's string
    -- comparisons follow the server's locale).
    local keys
    if kind == 'k' then
      keys = {sel}
    else
      keys = redis.call('HKEYS', entries)
    end
    for _, key in ipairs(keys) do
      if matches(key) then
        local e = entry(key, redis.call('HGET', entries, key))
        if e[1] ~= 0 then
          table.insert(out, key)
          table.insert(out, e[1])
          table.insert(out, e[2])
          table.insert(out, e[3])
        end
      end
    end
    return done(out)
  end
  -- The log after `after`, in chunks, the matching changes up to `limit`.
  local n, from = 0, '(' .. fmt(after)
  while true do
    local chunk = redis.call('ZRANGEBYSCORE', log, from, '+inf', 'LIMIT', 0, 256)
    for _, m in ipairs(chunk) do
      local c1 = string.find(m, ':', 1, true)
      local version = string.sub(m, 1, c1 - 1)
      local k = string.sub(m, c1 + 1, c1 + 1)
      local c3 = string.find(m, ':', c1 + 3, true)
      local len = tonumber(string.sub(m, c1 + 3, c3 - 1))
      local key = string.sub(m, c3 + 1, c3 + len)
      if matches(key) then
        if n == limit then
          out[2] = out[#out - 2]
          return done(out)
        end
        n = n + 1
        table.insert(out, key)
        table.insert(out, tonumber(version))
        table.insert(out, k)
        table.insert(out, string.sub(m, c3 + len + 1))
      end
      from = '(' .. version
    end
    if #chunk < 256 then break end
  end
  return done(out)
end

return redis.error_reply('unknown state operation ' .. tostring(op))
