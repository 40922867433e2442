-- Leader elections (after the prelude, lua/deadlines.lua and
-- membership/group.lua, whose helpers count a quorum group's live members).
-- KEYS: 1 leader hash {holder, meta, term, since, seq} (PEXPIRE = the term's
-- lease), 2 seq (string: terms granted), 3 term counter (next_token),
-- 4 candidates zset (holder -> deadline ms), 5 candidate info hash (holder ->
-- 'since_us|metadata'); with a quorum also the group's 6 members zset,
-- 7 member info hash, 8 seq.
-- ARGV: op, channel, then
--   campaign  holder, metadata, ttl_ms, min_members, group channel, stand
--             (1: when refused, record or refresh the holder's candidacy)
--   renew     holder, term, ttl_ms, min_members, group channel
--   resign    holder, term
--   proclaim  holder, term, metadata
--   withdraw  holder
--   leader, terms_granted, expiry, candidates, listed: nothing more.
--   revoke    term: ends the term if it is `term`, as resign does (a fenced
--             force release); {1, holder} or {0, {the live term}}. The term
--             counter stays, so the next term is larger.
local l, seq_key, counter, channel = KEYS[1], KEYS[2], KEYS[3], ARGV[2]
local cands, cand_info = KEYS[4], KEYS[5]

-- {holder, meta, term, since_us, seq, pttl_ms}; holder '' when nobody leads.
local function leader_row()
  local v = redis.call('HMGET', l, 'holder', 'meta', 'term', 'since', 'seq')
  if not v[1] then return {'', '', 0, 0, 0, 0} end
  return {v[1], v[2], tonumber(v[3]), tonumber(v[4]), tonumber(v[5]), redis.call('PTTL', l)}
end

-- Whether the election's quorum (if one was asked: 8 keys) is missing,
-- counted after dropping the members expired or without their info entry
-- (see count_members).
local function quorum_missing()
  if #KEYS < 8 then return false end
  return count_members(KEYS[6], KEYS[7], KEYS[8], ARGV[7]) < tonumber(ARGV[6])
end

-- Drops the expired candidacies; the candidate keys then live as long as
-- the latest candidacy (and go with the last one).
local function purge_candidates()
  if purge(cands, cand_info) > 0 then keep(cands, {cand_info}, 0) end
end

-- Drops the candidacies whose info entry is gone (the hash evicted under
-- maxmemory): a candidate is never listed or counted without its since
-- and metadata (decision 0064); its next round stands afresh. Found as a
-- group's are (group.lua's without_info: one ZCARD and one HLEN, a walk
-- only after the hash was lost).
local function drop_unlisted_candidates()
  local _, unlisted = without_info(cands, cand_info)
  for k = 1, #unlisted, 500 do
    redis.call('ZREM', cands, unpack(unlisted, k, math.min(k + 499, #unlisted)))
  end
end

-- Removes `holder`'s candidacy: whether it had a live one.
local function unstand(holder)
  purge_candidates()
  if redis.call('ZREM', cands, holder) == 0 then return false end
  redis.call('HDEL', cand_info, holder)
  keep(cands, {cand_info}, 0)
  return true
end

-- Whether `holder` leads in term `term` (both as the client sent them).
local function leads(holder, term)
  local v = redis.call('HMGET', l, 'holder', 'term')
  return v[1] == holder and v[2] == term
end

if op == 'campaign' then
  local holder, meta, ttl = ARGV[3], ARGV[4], tonumber(ARGV[5])
  local no_quorum = quorum_missing()
  local cur = leader_row()
  if cur[1] ~= '' or no_quorum then
    if ARGV[8] == '1' then
      purge_candidates()
      local since = fmt(now_us())
      if redis.call('ZSCORE', cands, holder) then
        local was = redis.call('HGET', cand_info, holder)
        since = string.match(was or '', '^(%d+)|') or since
      end
      redis.call('ZADD', cands, now_ms() + ttl, holder)
      redis.call('HSET', cand_info, holder, since .. '|' .. meta)
      keep(cands, {cand_info}, 0)
    end
    return {0, no_quorum and 1 or 0, unpack(cur)}
  end
  unstand(holder)
  local seq = redis.call('INCR', seq_key)
  redis.call('PEXPIRE', seq_key, ttl + KEEP_MS)
  local tok = next_token(counter, ttl + KEEP_MS)
  redis.call('HSET', l, 'holder', holder, 'meta', meta, 'term', fmt(tok),
    'since', fmt(now_us()), 'seq', seq)
  redis.call('PEXPIRE', l, ttl)
  redis.call('PUBLISH', channel, 'elected')
  return {1, 0, holder, meta, tok, now_us(), seq, ttl}
elseif op == 'renew' then
  local ttl = tonumber(ARGV[5])
  if not leads(ARGV[3], ARGV[4]) then return 0 end
  if quorum_missing() then
    redis.call('DEL', l)
    redis.call('PUBLISH', channel, 'stepped_down')
    return 0
  end
  redis.call('PEXPIRE', l, ttl)
  redis.call('PEXPIRE', seq_key, ttl + KEEP_MS)
  redis.call('PEXPIRE', counter, ttl + KEEP_MS)
  return 1
elseif op == 'resign' then
  if not leads(ARGV[3], ARGV[4]) then return 0 end
  redis.call('DEL', l)
  redis.call('PUBLISH', channel, 'resigned')
  return 1
elseif op == 'proclaim' then
  if not leads(ARGV[3], ARGV[4]) then return 0 end
  redis.call('HSET', l, 'meta', ARGV[5])
  redis.call('PUBLISH', channel, 'proclaimed')
  return 1
elseif op == 'withdraw' then
  return unstand(ARGV[3]) and 1 or 0
elseif op == 'candidates' then
  -- {holder, 'since_us|metadata', pttl_ms} per live candidacy (a read,
  -- but for dropping candidacies without their info).
  drop_unlisted_candidates()
  local now = now_ms()
  local live = redis.call('ZRANGEBYSCORE', cands, '(' .. fmt(now), '+inf', 'WITHSCORES')
  local out = {}
  for i = 1, #live, 2 do
    local info = redis.call('HGET', cand_info, live[i])
    if info then out[#out + 1] = {live[i], info, tonumber(live[i + 1]) - now} end
  end
  return out
elseif op == 'listed' then
  -- The leader row, then how many candidacies are live (a read, as
  -- candidates is).
  drop_unlisted_candidates()
  local row = leader_row()
  row[7] = redis.call('ZCOUNT', cands, '(' .. fmt(now_ms()), '+inf')
  return row
elseif op == 'leader' then
  return leader_row()
elseif op == 'terms_granted' then
  return tonumber(redis.call('GET', seq_key) or '0')
elseif op == 'expiry' then
  return redis.call('PTTL', l)
elseif op == 'revoke' then
  local v = redis.call('HMGET', l, 'holder', 'term')
  if not v[1] then return {0, {}} end
  if v[2] ~= ARGV[3] then return {0, {tonumber(v[2])}} end
  redis.call('DEL', l)
  redis.call('PUBLISH', channel, 'resigned')
  return {1, v[1]}
end
return redis.error_reply('coord: unknown election operation ' .. tostring(op))
