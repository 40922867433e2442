-- Leadership, membership and run-once jobs: one script, one EVALSHA per
-- operation. The key layout is documented in src/leadership.rs.
-- Times are the server's: TIME in microseconds (terms, since, joined) and in
-- milliseconds (member deadlines); leader and run leases expire by PEXPIRE.
-- ARGV[1] is the operation, ARGV[2] the notification channel of the
-- election, group or occurrence; the rest depends on the area:
--
-- elections: KEYS 1 leader hash {holder, meta, term, since, seq} (PEXPIRE =
--   the term's lease), 2 state hash {seq, tok}; with a quorum also the
--   group's 3 members zset, 4 member info hash, 5 group state hash.
--   ARGV op, channel, holder, metadata (campaign) or term (renew, resign),
--   ttl_ms, min_members, group channel.
-- groups: KEYS 1 members zset (holder -> deadline ms), 2 member info hash
--   (holder -> 'joined_us|metadata'), 3 group state hash {seq}.
--   ARGV op, channel, holder, metadata, ttl_ms.
-- run-once: KEYS 1 run (string: holder, PEXPIRE = the run's lease),
--   2 attempts (string counter), 3 finished marker (PX = retention),
--   4 the job's token counter (string).
--   ARGV op, channel, holder, ttl_ms (begin, extend) or retention_ms (end;
--   0 = not finished).
local op, channel = ARGV[1], ARGV[2]
local t = redis.call('TIME')
local now_us = tonumber(t[1]) * 1000000 + tonumber(t[2])
local now = math.floor(now_us / 1000)
-- How long state that must not go backwards (term and group seq, token
-- counters, attempt counts) outlives its last use, in ms: one MAX_TTL.
-- Within that window seq and attempts are exact; tokens stay increasing
-- beyond it (and across a restart) through the server clock.
local KEEP_MS = 86400000

local function fmt(n)
  return string.format('%d', n)
end

-- FencingToken::next_after: max(stored + 1, server time in microseconds),
-- the counter kept in field `field` of hash `h`.
local function next_token_field(h, field)
  local old = tonumber(redis.call('HGET', h, field) or '0')
  local tok = math.max(old + 1, now_us)
  redis.call('HSET', h, field, fmt(tok))
  return tok
end

-- The same with a string counter `k` kept `keep` ms.
local function next_token_key(k, keep)
  local old = tonumber(redis.call('GET', k) or '0')
  local tok = math.max(old + 1, now_us)
  redis.call('SET', k, fmt(tok), 'PX', keep)
  return tok
end

-- Groups ------------------------------------------------------------------

-- Every group key lives until KEEP_MS after its latest member deadline, so an
-- expiry is still noticed (and counted in seq) by the next operation.
local function g_keep(m, i, gs)
  local top = redis.call('ZRANGE', m, -1, -1, 'WITHSCORES')
  local ms = KEEP_MS + math.max(0, top[2] and (tonumber(top[2]) - now) or 0)
  redis.call('PEXPIRE', m, ms)
  redis.call('PEXPIRE', i, ms)
  redis.call('PEXPIRE', gs, ms)
end

-- Drops the members whose deadline passed (counting each in seq, publishing
-- 'expired' on `gchan` when any went).
local function g_purge(m, i, gs, gchan)
  local gone = redis.call('ZRANGEBYSCORE', m, '-inf', now)
  if #gone == 0 then return end
  for j = 1, #gone, 500 do
    local last = math.min(j + 499, #gone)
    redis.call('HDEL', i, unpack(gone, j, last))
    redis.call('ZREM', m, unpack(gone, j, last))
  end
  redis.call('HINCRBY', gs, 'seq', #gone)
  g_keep(m, i, gs)
  redis.call('PUBLISH', gchan, 'expired')
end

-- Elections -----------------------------------------------------------------

-- {holder, meta, term, since_us, seq, pttl_ms}; holder '' when nobody leads.
local function leader_row(l)
  local v = redis.call('HMGET', l, 'holder', 'meta', 'term', 'since', 'seq')
  if not v[1] then return {'', '', 0, 0, 0, 0} end
  return {v[1], v[2], tonumber(v[3]), tonumber(v[4]), tonumber(v[5]), redis.call('PTTL', l)}
end

-- Whether the election's quorum (if one was asked: 5 keys) is missing,
-- counted after dropping expired members.
local function quorum_missing()
  if #KEYS < 5 then return false end
  g_purge(KEYS[3], KEYS[4], KEYS[5], ARGV[7])
  return redis.call('ZCARD', KEYS[3]) < tonumber(ARGV[6])
end

-- Whether `holder` leads in term `term` (both as the client sent them).
local function leads(l, holder, term)
  local v = redis.call('HMGET', l, 'holder', 'term')
  return v[1] == holder and v[2] == term
end

if op == 'campaign' then
  local l, es = KEYS[1], KEYS[2]
  local holder, meta, ttl = ARGV[3], ARGV[4], tonumber(ARGV[5])
  local no_quorum = quorum_missing()
  local cur = leader_row(l)
  if cur[1] ~= '' or no_quorum then
    return {0, no_quorum and 1 or 0, unpack(cur)}
  end
  local seq = redis.call('HINCRBY', es, 'seq', 1)
  local tok = next_token_field(es, 'tok')
  redis.call('HSET', l, 'holder', holder, 'meta', meta, 'term', fmt(tok),
    'since', fmt(now_us), 'seq', seq)
  redis.call('PEXPIRE', l, ttl)
  redis.call('PEXPIRE', es, ttl + KEEP_MS)
  redis.call('PUBLISH', channel, 'elected')
  return {1, 0, holder, meta, tok, now_us, seq, ttl}
elseif op == 'renew' then
  local l, es = KEYS[1], KEYS[2]
  local ttl = tonumber(ARGV[5])
  if not leads(l, ARGV[3], ARGV[4]) then return 0 end
  if quorum_missing() then
    redis.call('DEL', l)
    redis.call('PUBLISH', channel, 'stepped_down')
    return 0
  end
  redis.call('PEXPIRE', l, ttl)
  redis.call('PEXPIRE', es, ttl + KEEP_MS)
  return 1
elseif op == 'resign' then
  if not leads(KEYS[1], ARGV[3], ARGV[4]) then return 0 end
  redis.call('DEL', KEYS[1])
  redis.call('PUBLISH', channel, 'resigned')
  return 1
elseif op == 'leader' then
  return leader_row(KEYS[1])
elseif op == 'terms_granted' then
  return tonumber(redis.call('HGET', KEYS[2], 'seq') or '0')
elseif op == 'leader_expiry' then
  return redis.call('PTTL', KEYS[1])
end

-- Groups (continued) --------------------------------------------------------

if op == 'join' then
  local m, i, gs = KEYS[1], KEYS[2], KEYS[3]
  local holder, meta, ttl = ARGV[3], ARGV[4], tonumber(ARGV[5])
  g_purge(m, i, gs, channel)
  local joined
  if redis.call('ZSCORE', m, holder) then
    joined = string.match(redis.call('HGET', i, holder) or '', '^(%d+)|')
  else
    redis.call('HINCRBY', gs, 'seq', 1)
  end
  redis.call('ZADD', m, now + ttl, holder)
  redis.call('HSET', i, holder, (joined or fmt(now_us)) .. '|' .. meta)
  g_keep(m, i, gs)
  redis.call('PUBLISH', channel, 'joined')
  return 1
elseif op == 'heartbeat' then
  local m, i, gs = KEYS[1], KEYS[2], KEYS[3]
  g_purge(m, i, gs, channel)
  if not redis.call('ZSCORE', m, ARGV[3]) then return 0 end
  redis.call('ZADD', m, now + tonumber(ARGV[5]), ARGV[3])
  g_keep(m, i, gs)
  return 1
elseif op == 'leave' then
  local m, i, gs = KEYS[1], KEYS[2], KEYS[3]
  g_purge(m, i, gs, channel)
  if redis.call('ZREM', m, ARGV[3]) == 0 then return 0 end
  redis.call('HDEL', i, ARGV[3])
  redis.call('HINCRBY', gs, 'seq', 1)
  g_keep(m, i, gs)
  redis.call('PUBLISH', channel, 'left')
  return 1
elseif op == 'members' then
  local m, i, gs = KEYS[1], KEYS[2], KEYS[3]
  g_purge(m, i, gs, channel)
  local rows = {}
  local zs = redis.call('ZRANGE', m, 0, -1, 'WITHSCORES')
  for j = 1, #zs, 2 do
    local info = redis.call('HGET', i, zs[j]) or ''
    local joined, meta = string.match(info, '^(%d+)|(.*)$')
    rows[#rows + 1] = {zs[j], tonumber(joined or '0'), meta or '', tonumber(zs[j + 1]) - now}
  end
  return {tonumber(redis.call('HGET', gs, 'seq') or '0'), rows}
elseif op == 'group_expiry' then
  local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  if not first[2] then return -2 end
  return math.max(0, tonumber(first[2]) - now)
end

-- Run-once jobs -------------------------------------------------------------

if op == 'begin_once' then
  local r, a, f, tk = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
  local ttl = tonumber(ARGV[4])
  if redis.call('EXISTS', f) == 1 then return {2} end
  local left = redis.call('PTTL', r)
  if left ~= -2 then return {1, math.max(left, 0)} end
  local attempt = redis.call('INCR', a)
  redis.call('PEXPIRE', a, ttl + KEEP_MS)
  local tok = next_token_key(tk, ttl + KEEP_MS)
  redis.call('SET', r, ARGV[3], 'PX', ttl)
  return {0, tok, attempt}
elseif op == 'extend_once' then
  local r, a = KEYS[1], KEYS[2]
  local ttl = tonumber(ARGV[4])
  if redis.call('GET', r) ~= ARGV[3] then return 0 end
  redis.call('PEXPIRE', r, ttl)
  redis.call('PEXPIRE', a, ttl + KEEP_MS)
  return 1
elseif op == 'end_once' then
  local r, a, f = KEYS[1], KEYS[2], KEYS[3]
  local retention = tonumber(ARGV[4])
  if redis.call('GET', r) ~= ARGV[3] then return 0 end
  redis.call('DEL', r)
  if retention > 0 then
    redis.call('SET', f, '1', 'PX', retention)
    redis.call('PEXPIRE', a, retention + KEEP_MS)
  end
  redis.call('PUBLISH', channel, 'ended')
  return 1
elseif op == 'once_expiry' then
  return redis.call('PTTL', KEYS[1])
end
return redis.error_reply('coord: unknown leadership operation ' .. tostring(op))
