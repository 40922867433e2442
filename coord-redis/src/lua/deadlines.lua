-- Leases kept as members of a sorted set scored by their deadline (server
-- ms): readers, writer intents, permits, group members. Included after the
-- prelude by the scripts that keep such sets (read-write locks, semaphores,
-- membership groups, elections with a quorum).

-- Drops the members of sorted set `z` whose deadline passed, and their fields
-- in hashes `h` and `h2` (if given); returns how many went.
local function purge(z, h, h2)
  local gone = redis.call('ZRANGEBYSCORE', z, '-inf', now_ms())
  for i = 1, #gone, 500 do
    local last = math.min(i + 499, #gone)
    if h then redis.call('HDEL', h, unpack(gone, i, last)) end
    if h2 then redis.call('HDEL', h2, unpack(gone, i, last)) end
    redis.call('ZREM', z, unpack(gone, i, last))
  end
  return #gone
end

-- Milliseconds until the latest deadline in `z`, or nil when it is empty.
local function latest(z)
  local top = redis.call('ZRANGE', z, -1, -1, 'WITHSCORES')
  if top[2] then return tonumber(top[2]) - now_ms() end
  return nil
end

-- Milliseconds until the earliest deadline in `z` (0 when past), or nil when
-- it is empty.
local function earliest(z)
  local first = redis.call('ZRANGE', z, 0, 0, 'WITHSCORES')
  if first[2] then return math.max(0, tonumber(first[2]) - now_ms()) end
  return nil
end

-- Lets `z` and the keys in `others` live `extra_ms` past the latest deadline
-- in `z`. With `extra_ms` 0 they are deleted once no deadline is ahead.
local function keep(z, others, extra_ms)
  local ms = math.max(latest(z) or 0, 0) + extra_ms
  for _, k in ipairs({z, unpack(others)}) do
    if ms > 0 then redis.call('PEXPIRE', k, ms) else redis.call('DEL', k) end
  end
end

