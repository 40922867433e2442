-- Shared by every coord script. Times are the server's: TIME in microseconds
-- (fencing tokens) and milliseconds (deadlines of readers, permits, intents).
-- ARGV[1] is the operation, ARGV[2] the notification channel.
local op, channel = ARGV[1], ARGV[2]
local t = redis.call('TIME')
local now_us = tonumber(t[1]) * 1000000 + tonumber(t[2])
local now = math.floor(now_us / 1000)
-- How long a token counter outlives the last grant on its key, in ms: the
-- counter keeps tokens increasing if the server clock steps back meanwhile.
local COUNTER_KEEP_MS = 3600000

-- FencingToken::next_after: max(stored + 1, server time in microseconds).
-- One SET ... GET in the usual case, where the clock is ahead of the counter.
local function next_token(counter_key, ttl)
  local keep = ttl + COUNTER_KEEP_MS
  local old = tonumber(redis.call('SET', counter_key, string.format('%d', now_us), 'PX', keep, 'GET') or '0')
  if old < now_us then return now_us end
  redis.call('SET', counter_key, string.format('%d', old + 1), 'PX', keep)
  return old + 1
end

-- Drops the members of sorted set `z` whose deadline passed, and their
-- fields in hash `h`.
local function purge(z, h)
  local gone = redis.call('ZRANGEBYSCORE', z, '-inf', now)
  for i = 1, #gone, 500 do
    local last = math.min(i + 499, #gone)
    if h then redis.call('HDEL', h, unpack(gone, i, last)) end
    redis.call('ZREM', z, unpack(gone, i, last))
  end
end

-- Lets sorted set `z` (and the keys in `others`) expire with its latest
-- deadline; deletes them when `z` is empty.
local function keep(z, others)
  local top = redis.call('ZRANGE', z, -1, -1, 'WITHSCORES')
  local ms = top[2] and (tonumber(top[2]) - now) or 0
  for _, k in ipairs({z, unpack(others or {})}) do
    if ms > 0 then redis.call('PEXPIRE', k, ms) else redis.call('DEL', k) end
  end
end

-- Milliseconds until the latest deadline in `z`, or nil when empty.
local function latest(z)
  local top = redis.call('ZRANGE', z, -1, -1, 'WITHSCORES')
  if top[2] then return tonumber(top[2]) - now end
  return nil
end

local function notify(what)
  redis.call('PUBLISH', channel, what)
end

