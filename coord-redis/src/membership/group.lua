-- A membership group's upkeep, shared by the membership script and the
-- election script (whose quorum counts a group's live members in the same
-- step). Included after the prelude and lua/deadlines.lua.
-- A group's keys: m members zset (holder -> deadline ms), i member info
-- hash (holder -> 'joined_us|metadata'), s seq (string: joins, leaves and
-- expiries counted).

-- Every group key lives KEEP_MS past the latest member deadline, so that an
-- expiry is still noticed (and counted in seq) by the next operation.
local function keep_group(m, i, s)
  keep(m, {i, s}, KEEP_MS)
end

-- Drops the members whose deadline passed, counting each in seq and
-- publishing 'expired' on the group's channel `chan` when any went.
local function purge_group(m, i, s, chan)
  local n = purge(m, i)
  if n == 0 then return end
  redis.call('INCRBY', s, n)
  keep_group(m, i, s)
  redis.call('PUBLISH', chan, 'expired')
end

-- Drops `holders`, members whose info entry is gone (the hash evicted under
-- maxmemory, or lost apart from the members zset): a member is never
-- listed or counted without its join time and metadata (decision 0064).
-- Gone as after an expiry: counted in seq, published, its next heartbeat
-- refused.
local function drop_unlisted(m, i, s, chan, holders)
  for k = 1, #holders, 500 do
    redis.call('ZREM', m, unpack(holders, k, math.min(k + 499, #holders)))
  end
  redis.call('INCRBY', s, #holders)
  keep_group(m, i, s)
  redis.call('PUBLISH', chan, 'expired')
end

-- The holders in zset `z` (n of them) whose entry in hash `h` is gone:
-- n and those names. Every script writes a holder's two entries together
-- and a key is evicted whole, so either every hash entry names a holder
-- (the hash lost and begun again) or every holder has one (the zset lost,
-- the hash keeping its entries): a hash as long as the zset means none is
-- missing. That one HLEN is all it costs beyond ZCARD; only after the hash
-- was lost is the zset walked (one HMGET per 500 holders).
local function without_info(z, h)
  local n = redis.call('ZCARD', z)
  if n == 0 or redis.call('HLEN', h) >= n then return n, {} end
  local names, missing = redis.call('ZRANGE', z, 0, -1), {}
  for k = 1, #names, 500 do
    local last = math.min(k + 499, #names)
    local infos = redis.call('HMGET', h, unpack(names, k, last))
    for j = k, last do
      if not infos[j - k + 1] then missing[#missing + 1] = names[j] end
    end
  end
  return n, missing
end

-- How many live members the group has, after dropping the expired ones and
-- those whose info entry is gone (without_info).
local function count_members(m, i, s, chan)
  purge_group(m, i, s, chan)
  local n, unlisted = without_info(m, i)
  if #unlisted > 0 then drop_unlisted(m, i, s, chan, unlisted) end
  return n - #unlisted
end
