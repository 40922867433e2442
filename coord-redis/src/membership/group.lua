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

-- How many live members the group has, after dropping the expired ones and
-- those whose info entry is gone. Every script writes a member's two
-- entries together and a key is evicted whole, so either every info entry
-- names a member (the info hash lost and begun again) or every member has
-- one (the members zset lost, the info hash keeping its entries): an info
-- hash as long as the members zset means every member has its entry. That
-- one HLEN is all a count costs beyond ZCARD; only a group that lost its
-- info hash is walked (one HMGET per 500 members).
local function count_members(m, i, s, chan)
  purge_group(m, i, s, chan)
  local n = redis.call('ZCARD', m)
  if n == 0 or redis.call('HLEN', i) >= n then return n end
  local names, unlisted = redis.call('ZRANGE', m, 0, -1), {}
  for k = 1, #names, 500 do
    local last = math.min(k + 499, #names)
    local infos = redis.call('HMGET', i, unpack(names, k, last))
    for j = k, last do
      if not infos[j - k + 1] then unlisted[#unlisted + 1] = names[j] end
    end
  end
  if #unlisted > 0 then drop_unlisted(m, i, s, chan, unlisted) end
  return n - #unlisted
end
