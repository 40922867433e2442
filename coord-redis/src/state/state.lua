-- Shared values (after the prelude). One script, the operation an argument;
-- the rules are those of coord-api's spi/state.rs, numbered there (1-8).
-- KEYS: 1 meta hash (head: the latest version; floor: the highest version
-- the log may lack), 2 version counter (next_token), 3 values hash (key ->
-- value), 4 versions hash (key -> version), 5 deadlines zset (key ->
-- deadline, server ms), 6 log zset (change -> its version). The channel is
-- KEYS[1] with its last letter made 'c' (same slot).
-- ARGV: op, then
--   get      key
--   put      key, value, expect ('a' any | 'n' absent | 'v' version),
--            expected version, ttl ms ('0': none)
--   delete   key, expect, expected version
--   changes  select ('k' key | 'p' prefix), key or prefix, after, limit
--
-- A logged change is the member '<version>:<kind>:<key length>:<key><value>'
-- (kind 'p' put, 'd' deleted, 'x' expired; the value only for a put),
-- scored by its version (below 2^53: exact in a double).
local meta, counter, values, versions, deadlines, log = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local channel = string.sub(meta, 1, -2) .. 'c'

local MAX_SPACE_KEYS = 1000
local CHANGES_KEPT = 1000

local now = now_ms()
local head = tonumber(redis.call('HGET', meta, 'head') or '0')
local floor = tonumber(redis.call('HGET', meta, 'floor') or '0')
local logged = false

-- Rule 2 and 5: logs `kind` of `key` (with `value` for a put) with the next
-- version; returns it.
local function append(key, kind, value)
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
  local n = redis.call('ZCARD', log)
  if n > CHANGES_KEPT then
    local drop = n - CHANGES_KEPT
    local last = redis.call('ZRANGE', log, drop - 1, drop - 1, 'WITHSCORES')
    floor = math.max(floor, tonumber(last[2]))
    redis.call('HSET', meta, 'floor', fmt(floor))
    redis.call('ZREMRANGEBYRANK', log, 0, drop - 1)
  end
  logged = true
  return version
end

-- Rule 1: every entry whose deadline passed goes, as an expiry.
local due = redis.call('ZRANGEBYSCORE', deadlines, '-inf', now)
for _, key in ipairs(due) do
  redis.call('HDEL', values, key)
  redis.call('HDEL', versions, key)
  redis.call('ZREM', deadlines, key)
  append(key, 'x')
end

-- Milliseconds left of `key`'s TTL, or -1.
local function left(key)
  local at = redis.call('ZSCORE', deadlines, key)
  if at then return math.max(0, tonumber(at) - now) end
  return -1
end

-- `{version, value, ms left}` of `key`, or {0} when absent.
local function current(key)
  local v = redis.call('HGET', versions, key)
  if not v then return {0} end
  return {tonumber(v), redis.call('HGET', values, key), left(key)}
end

-- Whether the entry at version `v` (false: absent, as HGET answers in a
-- script) meets the expectation.
local function met(expect, expected, v)
  if expect == 'a' then return true end
  if expect == 'n' then return not v end
  return v and tonumber(v) == tonumber(expected)
end

local function done(reply)
  if logged then
    redis.call('PEXPIRE', meta, KEEP_MS)
    redis.call('PEXPIRE', log, KEEP_MS)
    redis.call('PUBLISH', channel, 'changed')
  end
  return reply
end

if op == 'get' then
  return done(current(ARGV[2]))
end

if op == 'put' then
  local key, value, expect, expected, ttl = ARGV[2], ARGV[3], ARGV[4], ARGV[5], tonumber(ARGV[6])
  local v = redis.call('HGET', versions, key)
  if not met(expect, expected, v) then
    local now_entry = current(key)
    table.insert(now_entry, 1, 0)
    return done(now_entry)
  end
  if not v and redis.call('HLEN', versions) >= MAX_SPACE_KEYS then
    return done({2})
  end
  local version = append(key, 'p', value)
  redis.call('HSET', values, key, value)
  redis.call('HSET', versions, key, fmt(version))
  if ttl > 0 then
    redis.call('ZADD', deadlines, now + ttl, key)
  else
    redis.call('ZREM', deadlines, key)
  end
  return done({1, version})
end

if op == 'delete' then
  local key, expect, expected = ARGV[2], ARGV[3], ARGV[4]
  local v = redis.call('HGET', versions, key)
  if not met(expect, expected, v) then
    local now_entry = current(key)
    table.insert(now_entry, 1, 0)
    return done(now_entry)
  end
  if not v then return done({3}) end
  redis.call('HDEL', values, key)
  redis.call('HDEL', versions, key)
  redis.call('ZREM', deadlines, key)
  return done({1, append(key, 'd')})
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
  else
    local all = redis.call('ZRANGE', deadlines, 0, -1, 'WITHSCORES')
    for i = 1, #all, 2 do
      if matches(all[i]) then
        next_ms = math.max(0, tonumber(all[i + 1]) - now)
        break
      end
    end
  end
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
    local keys
    if kind == 'k' then
      keys = {sel}
    else
      keys = redis.call('HKEYS', versions)
      table.sort(keys)
    end
    for _, key in ipairs(keys) do
      if matches(key) then
        local e = current(key)
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
