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

