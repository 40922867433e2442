-- Work queues (after the prelude). One script, the operation an argument;
-- the rules are those of coord-api's spi/queues.rs, numbered there (1-9).
-- KEYS: 1 the ready zset (id -> (MAX_PRIORITY - priority) * 2^44 + id).
-- Every other name of the queue is its base (KEYS[1] without its last
-- letter) and a suffix, all in the queue's slot: w delayed zset (id -> due,
-- server ms), l in-flight zset (id -> delivery deadline, server ms), p
-- presence zset (consumer -> presence deadline, server ms), f prefetched
-- zset (id of a delivery not started -> its ready score, the order
-- stealing takes them in), m meta hash, x dead zset (id -> id), o deaths
-- zset (dead id -> order of death), c the channel; item hashes are
-- <base><id>:i, a consumer's set of the ids delivered to it
-- <base><consumer>:s, dedup keys <base><dedup key>:k. (One key passed
-- rather than nine: each costs the server as much as a small command.)
-- ARGV: op, then
--   push      per item: payload, priority, max attempts, delay ms ('0':
--             none), dedup key ('': none), dedup window ms
--   receive   consumer, ttl ms, presence ttl ms, max, steal ('1' | '0'),
--             the receive's id ('0': none)
--   extend    id, token, ttl ms
--   ack       id, token
--   take      id, token, then receive's arguments: the ack, then the
--             receive, in one step (its reply: the ack's, then receive's)
--   nack      id, token, error, retry ms
--   dead      id, token, reason
--   beat      consumer, ttl ms
--   leave     consumer
--   giveback  consumer, a receive's id (not '0')
--   list      after (id), limit
--   leases    item ('': every item), after token ('': none), limit ('': none)
--   revoke    item, token
--   requeue   id
--   remove    id
--   stats
--
-- An item's hash: p payload, q priority, n max attempts, a attempts
-- (started deliveries; absent: 0), l its current delivery ('' or absent:
-- not in flight) as '<token> <deadline, server ms> <1 started | 0
-- prefetched> <consumer>' (one field: a delivery is written and read whole,
-- and every field of a hash costs its writes and reads), g the id of the
-- receive that made the current delivery (written with every delivery, so
-- never a former one's; a consumer's holder may hold spaces, so not in l),
-- e the last error;
-- once dead also r the reason and z the time of death (server µs).
-- The meta hash: id (the last id given), tok (the last token drawn: the
-- token rule's counter, next_token's, kept in the hash a receive reads
-- anyway), deaths (the last order of death), delivered redelivered stolen
-- dead_lettered (counts), next (server ms at or before which nothing in the
-- delayed, in-flight and presence sets is due: a step sweeps only from
-- then; absent means now).
--
-- Numbers go to redis.call as strings (fmt's, or an argument passed on as
-- it came): the server would write a Lua number with printf's %.17g, about
-- four times what fmt's %d costs. Strings become numbers by arithmetic
-- (`s + 0`: one conversion; tonumber makes two). Together about 9% of a
-- take's server instructions (callgrind).
--
-- The common steps (push, receive, extend, ack) run inline, and the
-- helpers of the rarer ones (returns, deaths, dead consumers, stealing,
-- the sweep itself) are made only when a step needs them (lib()): a
-- closure costs about 0.1 µs per local of this chunk it captures, paid on
-- every step that makes it.
local ready_z = KEYS[1]
local base = string.sub(ready_z, 1, -2)
local meta, lease_z = base .. 'm', base .. 'l'

-- How long an empty queue's meta hash outlives its last item: the longest
-- TTL and dedup window (a day), and a minute.
local IDLE_MS = '86460000'

local MAX_PRIORITY = 9
-- 2^44: ids stay below it, and (MAX_PRIORITY + 1) * 2^44 is exact in a double.
local PRIORITY_STEP = 17592186044416
-- How many arguments one ZADD/ZREM/SADD/SREM carries at most.
local CHUNK = 400

-- An item's delivery field: token (as stored), deadline, '1' | '0',
-- consumer; nothing when it is not in flight.
local function delivery(l)
  if l then return string.match(l, '^(%d+) (%d+) (%d) (.+)$') end
end

-- The step's state shared with the helpers: the server time (ms), the
-- sweep hint (read first, lowered by every step that makes something due
-- earlier, written back at the end when it changed), whether an item was
-- made ready or delayed (rule 9), items moved to dead.
local now = now_ms()
local is_ack, is_receive = op == 'ack' or op == 'take', op == 'receive' or op == 'take'
-- A receive reads the token counter and the delivered count with the hint.
local m
if is_receive then
  m = redis.call('HMGET', meta, 'next', 'tok', 'delivered')
else
  m = {redis.call('HGET', meta, 'next')}
end
local st = {
  now = now, hint = (m[1] or 0) + 0, dirty = false, woke = false, dead = 0,
}

-- The helpers of the rarer steps, made on first use. They reach the
-- chunk's state through `st` and name the keys themselves: every local of
-- the chunk they used would be one more upvalue to make on every step.
local L
local function lib()
  if L then return L end
  L = {}
  local ready_z = KEYS[1]
  local base = string.sub(ready_z, 1, -2)
  local delayed_z, lease_z, presence_z, prefetch_z = base .. 'w', base .. 'l', base .. 'p', base .. 'f'
  local meta, dead_z, deaths_z = base .. 'm', base .. 'x', base .. 'o'
  local now = st.now
  local MAX_DEAD_KEPT = 10000
  -- The sweep hint when nothing is due at all (2^53).
  local NEVER = 9007199254740992
  local LEASE_EXPIRED, CONSUMER_GONE = 'lease expired', 'consumer gone'

  -- `cmd key` with the list `args`, CHUNK at a time (pairs kept whole).
  function L.bulk(cmd, key, args)
    for k = 1, #args, CHUNK do
      redis.call(cmd, key, unpack(args, k, math.min(k + CHUNK - 1, #args)))
    end
  end

  -- The first score of zset `z`, or nil.
  function L.first(z)
    local f = redis.call('ZRANGE', z, 0, 0, 'WITHSCORES')
    return f[2] and tonumber(f[2]) or nil
  end

  -- Rule 8: item `id` (out of every set of live items) is dead with
  -- `reason`; past MAX_DEAD_KEPT, the oldest deaths are dropped.
  function L.kill(id, h, reason)
    redis.call('HSET', h, 'l', '', 'r', reason, 'z', now_us())
    redis.call('ZADD', dead_z, id, id)
    redis.call('ZADD', deaths_z, fmt(redis.call('HINCRBY', meta, 'deaths', 1)), id)
    st.dead = st.dead + 1
    local over = redis.call('ZCARD', dead_z) - MAX_DEAD_KEPT
    if over > 0 then
      local oldest = redis.call('ZPOPMIN', deaths_z, over)
      for k = 1, #oldest, 2 do
        redis.call('ZREM', dead_z, oldest[k])
        redis.call('DEL', base .. oldest[k] .. ':i')
      end
    end
  end

  -- Rule 6: returns item `id` from its delivery. `why`: the error a
  -- started delivery leaves (and dies with on its last attempt); `record`:
  -- whether a prefetched one records it too (a nack); `retry`: ms before a
  -- started one is ready again; `owner`: only if delivered to that
  -- consumer, whose set the caller empties; `tok`: only if that is the
  -- current, unexpired delivery. 'r' (ready or delayed again), 'd' (dead),
  -- or nil (not in flight: nothing changed).
  function L.give_back(id, why, record, retry, owner, tok)
    local h = base .. id .. ':i'
    local v = redis.call('HMGET', h, 'l', 'a', 'n', 'q')
    local t, d, s, c = delivery(v[1])
    if not t then return nil end
    if tok and (t ~= tok or tonumber(d) <= now) then return nil end
    if owner and c ~= owner then return nil end
    local started = s == '1'
    redis.call('ZREM', lease_z, id)
    if not started then redis.call('ZREM', prefetch_z, id) end
    if not owner then redis.call('SREM', base .. c .. ':s', id) end
    if started and tonumber(v[2] or '0') >= tonumber(v[3]) then
      L.kill(id, h, why)
      return 'd'
    end
    if started and retry > 0 then
      local at = now + retry
      redis.call('ZADD', delayed_z, fmt(at), id)
      if at < st.hint then st.hint, st.dirty = at, true end
      st.woke = true
    else
      redis.call('ZADD', ready_z, (MAX_PRIORITY - tonumber(v[4])) * PRIORITY_STEP + tonumber(id), id)
      st.woke = true
    end
    if started or record then
      redis.call('HSET', h, 'l', '', 'e', why)
    else
      redis.call('HSET', h, 'l', '')
    end
    return 'r'
  end

  -- Forgets `consumer` and returns each of its deliveries (rule 6), lowest
  -- id first; how many.
  function L.forget(consumer)
    redis.call('ZREM', presence_z, consumer)
    local set = base .. consumer .. ':s'
    local ids = redis.call('SMEMBERS', set)
    redis.call('DEL', set)
    table.sort(ids, function(x, y) return tonumber(x) < tonumber(y) end)
    local n = 0
    for _, id in ipairs(ids) do
      if L.give_back(id, CONSUMER_GONE, false, 0, consumer) then n = n + 1 end
    end
    return n
  end

  -- Rule 1: delayed items due become ready; expired deliveries and every
  -- delivery of a consumer whose presence expired are returned, in the
  -- order of those instants (a deadline before a presence ending at the
  -- same instant). Then the hint is the earliest of what is left.
  function L.sweep()
    local due = redis.call('ZRANGEBYSCORE', delayed_z, '-inf', now)
    if #due > 0 then
      L.bulk('ZREM', delayed_z, due)
      local ready = {}
      for _, id in ipairs(due) do
        local q = redis.call('HGET', base .. id .. ':i', 'q')
        if q then
          ready[#ready + 1] = fmt((MAX_PRIORITY - tonumber(q)) * PRIORITY_STEP + tonumber(id))
          ready[#ready + 1] = id
        end
      end
      if #ready > 0 then
        L.bulk('ZADD', ready_z, ready)
        st.woke = true
      end
    end
    local leases = redis.call('ZRANGEBYSCORE', lease_z, '-inf', now, 'WITHSCORES')
    local gone = redis.call('ZRANGEBYSCORE', presence_z, '-inf', now, 'WITHSCORES')
    local i, j = 1, 1
    while i <= #leases or j <= #gone do
      if j > #gone or (i <= #leases and tonumber(leases[i + 1]) <= tonumber(gone[j + 1])) then
        L.give_back(leases[i], LEASE_EXPIRED, false, 0)
        i = i + 2
      else
        L.forget(gone[j])
        j = j + 2
      end
    end
    local hint = NEVER
    for _, z in ipairs({delayed_z, lease_z, presence_z}) do
      local at = L.first(z)
      if at and at < hint then hint = at end
    end
    st.hint, st.dirty = hint, true
  end

  -- With nothing delivered: ms until a delayed item is due, a delivery's
  -- deadline passes, or the presence of a consumer holding deliveries
  -- ends (-1: none). Consumers are looked at in presence order only while
  -- their deadline is earlier than the rest, at most 100; past that the
  -- 100th's deadline is answered (earlier than needed, never later).
  function L.next_in()
    local at = L.first(delayed_z)
    local l = L.first(lease_z)
    if l and (not at or l < at) then at = l end
    local from = 0
    while from < 100 do
      local p = redis.call('ZRANGE', presence_z, from, from + 19, 'WITHSCORES')
      if #p == 0 then break end
      for k = 1, #p, 2 do
        local pd = tonumber(p[k + 1])
        if at and pd >= at then return math.max(0, at - now) end
        if from + (k + 1) / 2 >= 100 or redis.call('EXISTS', base .. p[k] .. ':s') == 1 then
          return math.max(0, pd - now)
        end
      end
      from = from + 20
    end
    if not at then return -1 end
    return math.max(0, at - now)
  end

  -- Rule 3's stealing: up to `max` prefetched deliveries of consumers
  -- other than `consumer` (live ones: the sweep returned the dead ones'),
  -- highest priority then lowest id first, taken from them; appended to
  -- `found` as {payload, priority, max attempts, attempts, id}.
  function L.steal(consumer, max, found)
    local from, victims = 0, {}
    while #found < max do
      local ids = redis.call('ZRANGE', prefetch_z, from, from + max - #found - 1)
      if #ids == 0 then break end
      from = from + #ids
      for _, id in ipairs(ids) do
        local v = redis.call('HMGET', base .. id .. ':i', 'p', 'q', 'n', 'a', 'l')
        local _, _, _, c = delivery(v[5])
        if v[1] and c and c ~= consumer then
          found[#found + 1] = {v[1], v[2], v[3], v[4], id}
          victims[c] = victims[c] or {}
          table.insert(victims[c], id)
        end
      end
    end
    for victim, ids in pairs(victims) do
      L.bulk('SREM', base .. victim .. ':s', ids)
      L.bulk('ZREM', prefetch_z, ids)
    end
  end

  return L
end

-- The reads of a queue that does not exist (a mistyped name in `coordctl
-- holders` or the dashboard's queue view), and operations' listing and
-- revocation of one with nothing in flight, answer at once and write
-- nothing: the sweep would write its hint into the meta hash, which a
-- queue that does not exist would then keep for ever.
local reads = op == 'stats' or op == 'list' or op == 'leases' or op == 'revoke'
if reads and redis.call('EXISTS', meta) == 0 then
  if op == 'stats' then return {0, 0, 0, 0, 0, 0, 0, 0} end
  if op == 'revoke' then return {0, {}} end
  return {}
end
if (op == 'leases' or op == 'revoke') and redis.call('EXISTS', lease_z) == 0 then
  if op == 'leases' then return {} end
  return {0, {}}
end

-- Rule 1 first, unless the hint says nothing is due yet.
if st.hint <= now then lib().sweep() end

local reply
-- What a receive adds to the counts; the token counter it leaves (nil: no
-- token drawn), written with the hint in one HSET at the step's end.
local n_delivered, n_redelivered, n_stolen = 0, 0, 0
local last_tok

if is_ack then
  local id, tok = ARGV[2], ARGV[3]
  local h = base .. id .. ':i'
  local t, d, s, c = delivery(redis.call('HGET', h, 'l'))
  reply = 0
  -- Rule 5: the current, unexpired delivery only.
  if t == tok and d + 0 > now then
    redis.call('DEL', h)
    redis.call('ZREM', lease_z, id)
    redis.call('SREM', base .. c .. ':s', id)
    if s ~= '1' then redis.call('ZREM', base .. 'f', id) end
    reply = 1
  end
end

if is_receive then
  -- take's receive arguments follow the ack's two.
  local a0 = op == 'take' and 2 or 0
  local consumer, ttl, max = ARGV[a0 + 2], ARGV[a0 + 3] + 0, ARGV[a0 + 5] + 0
  local rid = ARGV[a0 + 7]
  -- Rule 3: presence first.
  local presence = now + ARGV[a0 + 4]
  redis.call('ZADD', base .. 'p', fmt(presence), consumer)
  if presence < st.hint then st.hint, st.dirty = presence, true end
  local found = {}
  local popped = redis.call('ZPOPMIN', ready_z, ARGV[a0 + 5])
  for k = 1, #popped, 2 do
    local id = popped[k]
    local v = redis.call('HMGET', base .. id .. ':i', 'p', 'q', 'n', 'a')
    -- (An id without an item is one deleted from outside.)
    if v[1] then
      v[5] = id
      found[#found + 1] = v
    end
  end
  local stolen = false
  if #found == 0 and ARGV[a0 + 6] == '1' then
    stolen = true
    lib().steal(consumer, max, found)
  end
  -- The reply: the ack's first for take, then next_in's place.
  if #found == 0 then
    if op == 'take' then reply = {reply, lib().next_in()} else reply = {lib().next_in()} end
  else
    -- The first delivery is started, the others prefetched; the tokens of
    -- one step follow each other (the token rule's draws within one
    -- instant), the counter (meta's tok) stored at the last.
    local dl = now + ttl
    local dls = fmt(dl)
    local tok = token_after((m[2] or 0) + 0)
    local many = #found > 1
    local leases, prefetched, owned
    if many then leases, prefetched, owned = {}, {}, {} end
    -- The reply, sized for one delivery: the ack's answer first for take,
    -- then next_in's place (-1), then 7 fields per delivery.
    local out, r
    if op == 'take' then
      out, r = {reply, -1, 0, 0, 0, 0, 0, 0, 0}, 2
    else
      out, r = {-1, 0, 0, 0, 0, 0, 0, 0}, 1
    end
    for k, f in ipairs(found) do
      local id, q, a = f[5], f[2], (f[4] or 0) + 0
      local t = tok + k - 1
      if a > 0 then n_redelivered = n_redelivered + 1 end
      local ts = fmt(t)
      if k == 1 then
        redis.call('HSET', base .. id .. ':i', 'l', ts .. ' ' .. dls .. ' 1 ' .. consumer, 'a', fmt(a + 1), 'g', rid)
      else
        redis.call('HSET', base .. id .. ':i', 'l', ts .. ' ' .. dls .. ' 0 ' .. consumer, 'g', rid)
        prefetched[#prefetched + 1] = fmt((MAX_PRIORITY - q) * PRIORITY_STEP + id)
        prefetched[#prefetched + 1] = id
      end
      if many then
        leases[#leases + 1] = dls
        leases[#leases + 1] = id
        owned[#owned + 1] = id
      end
      out[r + 1] = id + 0
      out[r + 2] = f[1]
      out[r + 3] = a + 1
      out[r + 4] = f[3] + 0
      out[r + 5] = t
      out[r + 6] = (k == 1 and 1 or 0) + (stolen and 2 or 0)
      out[r + 7] = q + 0
      r = r + 7
    end
    n_delivered = #found
    if stolen then n_stolen = #found end
    last_tok = fmt(tok + #found - 1)
    if many then
      lib().bulk('ZADD', lease_z, leases)
      lib().bulk('ZADD', base .. 'f', prefetched)
      lib().bulk('SADD', base .. consumer .. ':s', owned)
    else
      redis.call('ZADD', lease_z, dls, found[1][5])
      redis.call('SADD', base .. consumer .. ':s', found[1][5])
    end
    if dl < st.hint then st.hint, st.dirty = dl, true end
    reply = out
  end
end

if op == 'push' then
  local n = (#ARGV - 1) / 6
  -- Which items are pushed (rule 2): a duplicate's dedup key is held by an
  -- id (dup_id[k]) or by an earlier item of this push (dup_of[k], its
  -- index).
  local seen, dup_of, dup_id = {}, {}, {}
  local pushed = 0
  for k = 1, n do
    local key = ARGV[(k - 1) * 6 + 6]
    if key ~= '' then
      if seen[key] then
        dup_of[k] = seen[key]
      else
        local held = redis.call('GET', base .. key .. ':k')
        if held then
          dup_id[k] = tonumber(held)
        else
          seen[key] = k
        end
      end
    end
    if not dup_of[k] and not dup_id[k] then pushed = pushed + 1 end
  end
  local next_id = 0
  if pushed > 0 then next_id = redis.call('HINCRBY', meta, 'id', pushed) - pushed end
  local ids, ready, delayed = {}, {}, {}
  reply = {}
  for k = 1, n do
    if dup_of[k] then
      reply[k] = -ids[dup_of[k]]
    elseif dup_id[k] then
      reply[k] = -dup_id[k]
    else
      local o = (k - 1) * 6 + 1
      next_id = next_id + 1
      local id = fmt(next_id)
      ids[k] = next_id
      reply[k] = next_id
      local q, delay, key = ARGV[o + 2], ARGV[o + 4] + 0, ARGV[o + 5]
      redis.call('HSET', base .. id .. ':i', 'p', ARGV[o + 1], 'q', q, 'n', ARGV[o + 3])
      if key ~= '' then redis.call('SET', base .. key .. ':k', id, 'PX', ARGV[o + 6]) end
      if delay > 0 then
        local at = now + delay
        delayed[#delayed + 1] = fmt(at)
        delayed[#delayed + 1] = id
        if at < st.hint then st.hint, st.dirty = at, true end
      else
        ready[#ready + 1] = fmt((MAX_PRIORITY - q) * PRIORITY_STEP + next_id)
        ready[#ready + 1] = id
      end
    end
  end
  if #ready > 0 then
    if #ready <= CHUNK then redis.call('ZADD', ready_z, unpack(ready)) else lib().bulk('ZADD', ready_z, ready) end
    st.woke = true
  end
  if #delayed > 0 then
    lib().bulk('ZADD', base .. 'w', delayed)
    st.woke = true
  end
elseif op == 'extend' then
  local id, tok = ARGV[2], ARGV[3]
  local h = base .. id .. ':i'
  local v = redis.call('HMGET', h, 'l', 'a')
  local t, d, s, c = delivery(v[1])
  reply = 0
  -- Rule 4: the current, unexpired delivery only.
  if t == tok and d + 0 > now then
    local dl = now + ARGV[4]
    redis.call('ZADD', lease_z, fmt(dl), id)
    if dl < st.hint then st.hint, st.dirty = dl, true end
    local l = string.format('%s %d 1 %s', t, dl, c)
    if s == '1' then
      redis.call('HSET', h, 'l', l)
    else
      redis.call('HSET', h, 'l', l, 'a', tonumber(v[2] or '0') + 1)
      redis.call('ZREM', base .. 'f', id)
    end
    reply = 1
  end
elseif op == 'nack' then
  local r = lib().give_back(ARGV[2], ARGV[4], true, tonumber(ARGV[5]), nil, ARGV[3])
  reply = (r == 'r' and 1) or (r == 'd' and 2) or 0
elseif op == 'dead' then
  local id, tok = ARGV[2], ARGV[3]
  local h = base .. id .. ':i'
  local t, d, s, c = delivery(redis.call('HGET', h, 'l'))
  reply = 0
  if t == tok and tonumber(d) > now then
    redis.call('ZREM', lease_z, id)
    redis.call('SREM', base .. c .. ':s', id)
    if s ~= '1' then redis.call('ZREM', base .. 'f', id) end
    lib().kill(id, h, ARGV[4])
    reply = 1
  end
elseif op == 'beat' then
  local presence = now + tonumber(ARGV[3])
  redis.call('ZADD', base .. 'p', fmt(presence), ARGV[2])
  if presence < st.hint then st.hint, st.dirty = presence, true end
  reply = 1
elseif op == 'leave' then
  reply = 0
  if redis.call('ZSCORE', base .. 'p', ARGV[2]) then reply = lib().forget(ARGV[2]) end
elseif op == 'giveback' then
  -- Rule 7: the current, unexpired deliveries of that receive to that
  -- consumer are ready again as if never made (a started one's attempt
  -- taken back).
  local consumer, rid = ARGV[2], ARGV[3]
  local set = base .. consumer .. ':s'
  reply = 0
  for _, id in ipairs(redis.call('SMEMBERS', set)) do
    local h = base .. id .. ':i'
    local v = redis.call('HMGET', h, 'l', 'g', 'a', 'q')
    local t, d, s, c = delivery(v[1])
    if t and c == consumer and v[2] == rid and rid ~= '0' and d + 0 > now then
      redis.call('ZREM', lease_z, id)
      redis.call('SREM', set, id)
      if s == '1' then
        redis.call('HSET', h, 'l', '', 'a', fmt(math.max(0, (v[3] or 0) - 1)))
      else
        redis.call('ZREM', base .. 'f', id)
        redis.call('HSET', h, 'l', '')
      end
      redis.call('ZADD', ready_z, fmt((MAX_PRIORITY - tonumber(v[4])) * PRIORITY_STEP + tonumber(id)), id)
      st.woke = true
      reply = reply + 1
    end
  end
elseif op == 'list' then
  local ids = redis.call('ZRANGEBYSCORE', base .. 'x', '(' .. ARGV[2], '+inf', 'LIMIT', '0', ARGV[3])
  reply = {}
  for _, id in ipairs(ids) do
    local v = redis.call('HMGET', base .. id .. ':i', 'p', 'a', 'r', 'z')
    if v[1] then
      reply[#reply + 1] = tonumber(id)
      reply[#reply + 1] = v[1]
      reply[#reply + 1] = tonumber(v[2] or '0')
      reply[#reply + 1] = v[3] or ''
      reply[#reply + 1] = tonumber(v[4] or '0')
    end
  end
elseif op == 'leases' then
  -- Operations' listing: the live deliveries (the sweep returned the
  -- others), of item ARGV[2] only unless it is '', whose token is past
  -- ARGV[3] ('': any), the ARGV[4] ('': every one) of lowest token: {id,
  -- token, ms left, 1 started | 0 prefetched, consumer} each, in token
  -- order. (The reply is a page; finding it reads every delivery.)
  local ids = {ARGV[2]}
  if ARGV[2] == '' then ids = redis.call('ZRANGE', lease_z, 0, -1) end
  local after, limit = tonumber(ARGV[3]) or -1, tonumber(ARGV[4])
  reply = {}
  for _, id in ipairs(ids) do
    local t, d, s, c = delivery(redis.call('HGET', base .. id .. ':i', 'l'))
    if t and d + 0 > now and t + 0 > after then
      reply[#reply + 1] = {id + 0, t + 0, d - now, s + 0, c}
    end
  end
  table.sort(reply, function(x, y) return x[2] < y[2] end)
  for k = #reply, (limit or #reply) + 1, -1 do reply[k] = nil end
elseif op == 'revoke' then
  -- Operations' revocation of item ARGV[2]'s delivery ARGV[3]: returned as
  -- an expired one is (rule 6), its error REVOKED. {1, consumer}, or {0,
  -- the token of the item's live delivery (none: not in flight)}.
  local id, tok = ARGV[2], ARGV[3]
  local t, d, s, c = delivery(redis.call('HGET', base .. id .. ':i', 'l'))
  if not t or d + 0 <= now then
    reply = {0, {}}
  elseif t ~= tok then
    reply = {0, {t + 0}}
  else
    lib().give_back(id, 'revoked by an operator', false, 0)
    reply = {1, c}
  end
elseif op == 'requeue' then
  local id = ARGV[2]
  reply = 0
  if redis.call('ZREM', base .. 'x', id) == 1 then
    redis.call('ZREM', base .. 'o', id)
    local h = base .. id .. ':i'
    redis.call('HDEL', h, 'r', 'z', 'e')
    redis.call('HSET', h, 'a', '0')
    local q = tonumber(redis.call('HGET', h, 'q') or '0')
    redis.call('ZADD', ready_z, fmt((MAX_PRIORITY - q) * PRIORITY_STEP + tonumber(id)), id)
    st.woke = true
    reply = 1
  end
elseif op == 'remove' then
  local id = ARGV[2]
  reply = 0
  if redis.call('ZREM', base .. 'x', id) == 1 then
    redis.call('ZREM', base .. 'o', id)
    redis.call('DEL', base .. id .. ':i')
    reply = 1
  end
elseif op == 'stats' then
  local m = redis.call('HMGET', meta, 'delivered', 'redelivered', 'stolen', 'dead_lettered')
  reply = {
    redis.call('ZCARD', ready_z), redis.call('ZCARD', base .. 'w'), redis.call('ZCARD', lease_z),
    redis.call('ZCARD', base .. 'x'), tonumber(m[1] or '0'), tonumber(m[2] or '0'),
    tonumber(m[3] or '0'), tonumber(m[4] or '0') + st.dead,
  }
  for _, c in ipairs(redis.call('ZRANGE', base .. 'p', 0, -1)) do
    reply[#reply + 1] = c
  end
elseif not (is_ack or is_receive) then
  return redis.error_reply('coord: unknown queue operation ' .. tostring(op))
end


-- The step's end: the counts, the hint, the wake-up (rule 9).
if n_redelivered > 0 then redis.call('HINCRBY', meta, 'redelivered', n_redelivered) end
if n_stolen > 0 then redis.call('HINCRBY', meta, 'stolen', n_stolen) end
if st.dead > 0 then redis.call('HINCRBY', meta, 'dead_lettered', st.dead) end
if last_tok then
  local delivered = fmt((m[3] or 0) + n_delivered)
  if st.dirty then
    redis.call('HSET', meta, 'tok', last_tok, 'delivered', delivered, 'next', fmt(st.hint))
  else
    redis.call('HSET', meta, 'tok', last_tok, 'delivered', delivered)
  end
elseif st.dirty then
  redis.call('HSET', meta, 'next', st.hint)
end
-- A queue with no item and no dead item forgets its meta hash a day after
-- the step that emptied it (as the memory backend forgets an idle empty
-- queue): every presence and dedup window has ended by then, ids may start
-- again, and tokens drawn again start at the clock. Only an ack or a
-- removal empties a queue; a push keeps it.
if op == 'push' then
  redis.call('PERSIST', meta)
elseif (is_ack or op == 'remove')
    and redis.call('EXISTS', ready_z, base .. 'w', lease_z, base .. 'x') == 0 then
  redis.call('PEXPIRE', meta, IDLE_MS)
end
if st.woke then redis.call('PUBLISH', base .. 'c', 'ready') end
return reply
