-- Topics' durable streams (after the prelude). One script, the operation an
-- argument; the rules are those of coord-api's spi/topics.rs (1-8).
-- KEYS: 1 the stream (entries `<ms>-<offset>`: fields k kind, v version, p
-- payload), 2 meta hash (last: the last offset; ms: the last entry's ms;
-- dead:<sub>: the last dead id of a subscription; due:<sub>: its sweep
-- hint), 3 token counter, 4
-- subscriptions hash (sub -> cursor: the offset of the last event handed
-- out for the first time); then the subscription's: 5 flights hash
-- (offset -> 'token|deadline|attempt|entry id|consumer|read id', the read
-- id (of the read that made the delivery, '0' none) absent from a delivery
-- made before it was kept: decision 0044), 6 deadlines zset
-- (offset -> delivery deadline, server ms), 7 retry zset (offset -> due,
-- server ms), 8 retry hash (offset -> 'attempts|entry id'), 9 presence zset
-- (consumer -> presence deadline, server ms), 10 dead zset (dead id -> dead
-- id); a dead event is the hash <sub base><id>:y (o offset, t ms, k, v, p,
-- r reason, z time of death µs). The channel is <topic base>c.
-- Each subscription is also a consumer group of the stream, named as the
-- subscription: XREADGROUP hands new entries out (moving the group's last
-- id with the cursor), XACK settles them, SETID moves both on a seek.
-- ARGV: op, then
--   publish   n, max_len ('0': none), max_age ms ('0': none), then per
--             event: kind, version, payload
--   subscribe sub, start kind ('e' | 'l' | 'o' | 't'), start value
--   seek      sub, start kind, start value
--   read      sub, consumer, ttl ms, presence ttl ms, max, read id ('0':
--             none)
--   extend    sub, offset, token, ttl ms
--   ack       sub, offset, token
--   ackread   sub, offset, token, consumer, ttl ms, presence ttl ms, max,
--             read id
--             (an ack, then a read whatever it answered)
--   nack      sub, offset, token, retry ms
--   dead      sub, offset, token, reason
--   beat      sub, consumer, ttl ms
--   leave     sub, consumer
--   giveback  sub, consumer, a read's id (not '0')
--   list      sub, after, limit
--   leases    sub, offset ('': every offset), after token ('': none),
--             limit ('': none)
--   revoke    sub, offset, token
--   unsub     sub
--   stats     sub
local stream, meta, counter, subs = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local flights, deadlines, retry_z, retry_h, presence, dead_z = KEYS[5], KEYS[6], KEYS[7], KEYS[8], KEYS[9], KEYS[10]
local MAX_DEAD_KEPT = 10000
local MAX_SEQ = '18446744073709551615'

local function split(s)
  local out = {}
  for part in string.gmatch(s, '([^|]*)|?') do
    out[#out + 1] = part
    if #out == 6 then break end
  end
  return out
end

-- A delivery ('token|deadline|attempt|entry id|consumer|read id'): its
-- parts, the read id nil when none was kept. The consumer (a holder id,
-- which ends with '#<nonce>') may hold '|': it runs from the fourth '|' to
-- the read id, a last part of digits alone.
local function delivery(s)
  local f = {string.match(s, '^([^|]*)|([^|]*)|([^|]*)|([^|]*)|(.*)$')}
  if #f < 5 then return split(s) end
  local consumer, rid = string.match(f[5], '^(.*)|(%d+)$')
  if consumer then f[5], f[6] = consumer, rid end
  return f
end

-- The offset of an entry id (its sequence part).
local function offset_of(id)
  return tonumber(string.match(id, '-(%d+)$'))
end

local function ms_of(id)
  return tonumber(string.match(id, '^(%d+)-'))
end

local function last_offset()
  return tonumber(redis.call('HGET', meta, 'last') or '0')
end

-- The first entry kept: its id, or nil.
local function first_id()
  local e = redis.call('XRANGE', stream, '-', '+', 'COUNT', 1)
  return e[1] and e[1][1] or nil
end

-- Where `start` places a cursor: the group id to SETID and the cursor
-- offset (rule 3).
local function place(kind, value)
  local last = last_offset()
  local first = first_id()
  if kind == 'l' or not first then
    return '$', last
  end
  if kind == 'e' then
    return '0-0', offset_of(first) - 1
  end
  if kind == 't' then
    local t = tonumber(value)
    -- (At the epoch, every event is at or after it.)
    if t < 1 then return '0-0', offset_of(first) - 1 end
    local before = redis.call('XREVRANGE', stream, fmt(t - 1) .. '-' .. MAX_SEQ, '-', 'COUNT', 1)
    if before[1] then
      return before[1][1], offset_of(before[1][1])
    end
    return '0-0', offset_of(first) - 1
  end
  -- An offset: the entries before it stay behind the group's id.
  local o = tonumber(value)
  if o > last then return '$', last end
  if o <= offset_of(first) then return '0-0', o - 1 end
  -- The smallest ms at which the last entry at or before it has an offset
  -- of at least o (ids order by ms, then offset).
  local lo, hi = ms_of(first), ms_of(redis.call('XREVRANGE', stream, '+', '-', 'COUNT', 1)[1][1])
  while lo < hi do
    local mid = math.floor((lo + hi) / 2)
    local e = redis.call('XREVRANGE', stream, fmt(mid) .. '-' .. MAX_SEQ, '-', 'COUNT', 1)
    if e[1] and offset_of(e[1][1]) >= o then hi = mid else lo = mid + 1 end
  end
  return fmt(lo) .. '-' .. fmt(o - 1), o - 1
end

local now = now_ms()

-- A retry set's member: the offset zero-padded, so that retries due at
-- the same instant come back lowest offset first (equal scores order by
-- the member's bytes: "10" before "9").
local function retry_member(o)
  return string.format('%020d', o)
end

-- Rule 1: offset `o` (delivery or none) goes to the retry set, due `due`.
local function to_retry(o, due, attempts, id)
  redis.call('HDEL', flights, o)
  redis.call('ZREM', deadlines, o)
  redis.call('ZADD', retry_z, fmt(due), retry_member(o))
  redis.call('HSET', retry_h, o, attempts .. '|' .. id)
end

-- The sweep hint (meta field due:<sub>): no presence or delivery deadline
-- of the subscription is earlier than it, so a sweep before it has nothing
-- to do and costs one read. Every step that sets a deadline lowers it
-- (`due_by`); a sweep that runs recomputes it. Missing: unknown (sweep).
local NEVER = 9007199254740992
local due_hint

-- Lowers the hint to `t` (a deadline just set) if it is later.
local function due_by(t)
  if not due_hint or t < due_hint then
    due_hint = t
    redis.call('HSET', meta, 'due:' .. ARGV[2], fmt(t))
  end
end

local function earliest_deadline()
  local soon = NEVER
  for _, z in ipairs({presence, deadlines}) do
    local f = redis.call('ZRANGE', z, 0, 0, 'WITHSCORES')
    if f[2] then soon = math.min(soon, tonumber(f[2])) end
  end
  return soon
end

local function sweep(sub)
  due_hint = tonumber(redis.call('HGET', meta, 'due:' .. sub))
  if due_hint and due_hint > now then return end
  local gone = redis.call('ZRANGEBYSCORE', presence, '-inf', now)
  if #gone > 0 then
    local dead = {}
    for _, c in ipairs(gone) do
      dead[c] = true
      redis.call('ZREM', presence, c)
      pcall(redis.call, 'XGROUP', 'DELCONSUMER', stream, sub, c)
    end
    local all = redis.call('HGETALL', flights)
    for k = 1, #all, 2 do
      local f = delivery(all[k + 1])
      if dead[f[5]] then to_retry(all[k], now, f[3], f[4]) end
    end
  end
  for _, o in ipairs(redis.call('ZRANGEBYSCORE', deadlines, '-inf', now)) do
    local f = delivery(redis.call('HGET', flights, o))
    to_retry(o, now, f[3], f[4])
  end
  due_hint = earliest_deadline()
  redis.call('HSET', meta, 'due:' .. sub, fmt(due_hint))
end

-- The current, unexpired delivery of `o` by `tok`: its fields, or nil.
local function held(o, tok)
  local v = redis.call('HGET', flights, o)
  if not v then return nil end
  local f = delivery(v)
  if f[1] ~= tok or tonumber(f[2]) <= now then return nil end
  return f
end

-- Rule 7: wakes the topic's watchers (a hint: they read again).
local function wake()
  redis.call('PUBLISH', string.sub(stream, 1, -2) .. 'c', '')
end

local function entry(e)
  local k, v, p
  local fields = e[2]
  for i = 1, #fields, 2 do
    if fields[i] == 'k' then k = fields[i + 1]
    elseif fields[i] == 'v' then v = fields[i + 1]
    elseif fields[i] == 'p' then p = fields[i + 1] end
  end
  return k, v, p
end

if op == 'publish' then
  local n, max_len, max_age = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
  local last = last_offset()
  local ms = math.max(now, tonumber(redis.call('HGET', meta, 'ms') or '0'))
  local firstn = last + 1
  for i = 0, n - 1 do
    last = last + 1
    local a = 5 + i * 3
    redis.call('XADD', stream, fmt(ms) .. '-' .. fmt(last), 'k', ARGV[a], 'v', ARGV[a + 1], 'p', ARGV[a + 2])
  end
  redis.call('HSET', meta, 'last', fmt(last), 'ms', fmt(ms))
  if max_len > 0 then redis.call('XTRIM', stream, 'MAXLEN', max_len) end
  if max_age > 0 then redis.call('XTRIM', stream, 'MINID', fmt(now - max_age) .. '-0') end
  wake()
  return {firstn, ms}
end

local sub = ARGV[2]

if op == 'subscribe' then
  if redis.call('HEXISTS', subs, sub) == 1 then return 0 end
  local id, cursor = place(ARGV[3], ARGV[4])
  if not pcall(redis.call, 'XGROUP', 'CREATE', stream, sub, id, 'MKSTREAM') then
    redis.call('XGROUP', 'SETID', stream, sub, id)
  end
  redis.call('HSET', subs, sub, fmt(cursor))
  return 1
end

if op == 'stats' then
  local first = first_id()
  local out = {0, 0, last_offset(), first and offset_of(first) or 0, 0, 0, 0, 0}
  local cursor = redis.call('HGET', subs, sub)
  if cursor then
    sweep(sub)
    out[1], out[2] = 1, tonumber(cursor)
    out[5], out[6] = redis.call('HLEN', flights), redis.call('ZCARD', retry_z)
    out[7], out[8] = redis.call('ZCARD', presence), redis.call('ZCARD', dead_z)
  end
  return out
end

if op == 'list' then
  local after, limit = ARGV[3], tonumber(ARGV[4])
  local ids = redis.call('ZRANGEBYSCORE', dead_z, '(' .. after, '+inf', 'LIMIT', 0, limit)
  local base = string.sub(dead_z, 1, -2)
  local out = {}
  for _, id in ipairs(ids) do
    local h = redis.call('HMGET', base .. id .. ':y', 'o', 't', 'k', 'v', 'p', 'r', 'z')
    -- A trimmed event's fields are absent: -1 and '' stand for them.
    out[#out + 1] = {tonumber(id), tonumber(h[1]), tonumber(h[2] or '-1'), h[3] or '', tonumber(h[4] or '0'), h[5] or '', h[6], tonumber(h[7])}
  end
  return out
end

if op == 'unsub' then
  if redis.call('HDEL', subs, sub) == 0 then return 0 end
  pcall(redis.call, 'XGROUP', 'DESTROY', stream, sub)
  local base = string.sub(dead_z, 1, -2)
  for _, id in ipairs(redis.call('ZRANGE', dead_z, 0, -1)) do
    redis.call('DEL', base .. id .. ':y')
  end
  redis.call('DEL', flights, deadlines, retry_z, retry_h, presence, dead_z)
  redis.call('HDEL', meta, 'dead:' .. sub, 'due:' .. sub)
  return 1
end

-- Every other step is on an existing subscription, swept first.
local cursor = redis.call('HGET', subs, sub)
if not cursor then
  if op == 'leases' then return {} elseif op == 'revoke' then return {0, {}} end
  return -1
end
cursor = tonumber(cursor)
sweep(sub)

if op == 'leases' then
  -- Operations' listing: the subscription's live deliveries (the sweep
  -- ended the others), of offset ARGV[3] only unless it is '', whose token
  -- is past ARGV[4] ('': any), the ARGV[5] ('': every one) of lowest token:
  -- {offset, token, ms left, consumer} each, in token order. (The reply is
  -- a page; finding it reads every delivery.)
  local after, limit = tonumber(ARGV[4]) or -1, tonumber(ARGV[5])
  local out, all = {}
  if ARGV[3] == '' then
    all = redis.call('HGETALL', flights)
  else
    all = {ARGV[3], redis.call('HGET', flights, ARGV[3])}
  end
  for k = 1, #all, 2 do
    if all[k + 1] then
      local f = delivery(all[k + 1])
      if tonumber(f[1]) > after then
        out[#out + 1] = {tonumber(all[k]), tonumber(f[1]), tonumber(f[2]) - now, f[5]}
      end
    end
  end
  table.sort(out, function(x, y) return x[2] < y[2] end)
  for k = #out, (limit or #out) + 1, -1 do out[k] = nil end
  return out
end

if op == 'revoke' then
  -- Operations' revocation of offset ARGV[3]'s delivery ARGV[4]: to the
  -- retry set, due at once, keeping its attempt (as an expiry, rule 1).
  -- {1, consumer}, or {0, the offset's live delivery's token (none: not
  -- in flight)}.
  local v = redis.call('HGET', flights, ARGV[3])
  if not v then return {0, {}} end
  local f = delivery(v)
  if f[1] ~= ARGV[4] then return {0, {tonumber(f[1])}} end
  to_retry(ARGV[3], now, f[3], f[4])
  wake()
  return {1, f[5]}
end

if op == 'seek' then
  local id, c = place(ARGV[3], ARGV[4])
  redis.call('XGROUP', 'SETID', stream, sub, id)
  redis.call('HSET', subs, sub, fmt(c))
  -- Rule 7: a subscriber waiting reads again from the new place.
  wake()
  return c + 1
end

-- Rule 4: delivers up to `max` events to `consumer`; the reply of a read.
local function read(consumer, ttl, pttl, max, rid)
  redis.call('ZADD', presence, fmt(now + pttl), consumer)
  due_by(now + pttl)
  -- `retried`: the offsets this read takes from the retry set, under
  -- delivery once it ends (the cursor passes over them too).
  local picked, missed, retried = {}, {}, {}
  -- Retries due, lowest due time then offset. One whose event was trimmed
  -- is reported missed and leaves its place in the batch to the next due
  -- (each page taken leaves the retry set, so the loop ends).
  while #picked < max do
    local due = redis.call('ZRANGEBYSCORE', retry_z, '-inf', now, 'LIMIT', 0, max - #picked)
    if #due == 0 then break end
    for _, m in ipairs(due) do
      local o = fmt(tonumber(m))
      local r = split(redis.call('HGET', retry_h, o))
      redis.call('ZREM', retry_z, m)
      redis.call('HDEL', retry_h, o)
      local e = redis.call('XRANGE', stream, r[2], r[2])
      if e[1] then
        picked[#picked + 1] = {e[1], tonumber(r[1]) + 1}
        retried[tonumber(o)] = true
      else
        redis.call('XACK', stream, sub, r[2])
        missed[#missed + 1] = {tonumber(o), tonumber(o)}
      end
    end
  end
  -- Then new entries after the cursor (none if the cursor is at the last:
  -- the group's id is never ahead of the cursor, and entries between them
  -- were trimmed).
  -- Offsets under delivery (after a seek back) are passed over without
  -- counting against `max`: read on until `max` are picked or the stream
  -- ends.
  local left = max - #picked
  if left > 0 and last_offset() > cursor then
    local ended = false
    while left > 0 and not ended do
      local got = redis.call('XREADGROUP', 'GROUP', sub, consumer, 'COUNT', left, 'STREAMS', stream, '>')
      local entries = got and got[1] and got[1][2] or {}
      for _, e in ipairs(entries) do
        local o = offset_of(e[1])
        if o > cursor + 1 then missed[#missed + 1] = {cursor + 1, o - 1} end
        cursor = o
        local busy = retried[o] or redis.call('HEXISTS', flights, o) == 1
          or redis.call('HEXISTS', retry_h, o) == 1
        if not busy then
          picked[#picked + 1] = {e, 1}
          left = left - 1
        end
      end
      ended = #entries == 0 or cursor >= last_offset()
    end
    local last = last_offset()
    if ended and last > cursor then
      missed[#missed + 1] = {cursor + 1, last}
      cursor = last
    end
    redis.call('HSET', subs, sub, fmt(cursor))
  end
  local out = {{}, missed, -1}
  for _, p in ipairs(picked) do
    local e, attempt = p[1], p[2]
    local o = offset_of(e[1])
    local tok = next_token(counter, KEEP_MS)
    local deadline = now + ttl
    redis.call('HSET', flights, o, fmt(tok) .. '|' .. fmt(deadline) .. '|' .. attempt .. '|' .. e[1] .. '|' .. consumer .. '|' .. rid)
    redis.call('ZADD', deadlines, fmt(deadline), o)
    due_by(deadline)
    local k, v, pl = entry(e)
    table.insert(out[1], {o, ms_of(e[1]), k, tonumber(v), pl, tok, attempt})
  end
  if #picked == 0 then
    -- When to look again, if anything is pending: a retry due, a
    -- delivery's deadline, or the end of the presence of a consumer
    -- holding deliveries (they go back then). Without deliveries no
    -- presence counts; with some, only one ending before every deadline
    -- is looked up among the holders (one HVALS of the flights).
    local soon, held
    for _, z in ipairs({retry_z, deadlines}) do
      local f = redis.call('ZRANGE', z, 0, 0, 'WITHSCORES')
      if f[2] and (not soon or tonumber(f[2]) < soon) then soon = tonumber(f[2]) end
      held = z == deadlines and f[2] ~= nil
    end
    if held then
      local early = redis.call('ZRANGEBYSCORE', presence, '-inf', '(' .. fmt(soon), 'WITHSCORES')
      if #early > 0 then
        local holding = {}
        for _, v in ipairs(redis.call('HVALS', flights)) do holding[delivery(v)[5]] = true end
        for k = 1, #early, 2 do
          if holding[early[k]] then
            soon = tonumber(early[k + 1])
            break
          end
        end
      end
    end
    if soon then out[3] = math.max(0, soon - now) end
  end
  return out
end

-- Ends delivery `f` of offset `o` (an ack, a dead letter): no longer in
-- flight, and acked in the consumer group.
local function finish(o, f)
  redis.call('HDEL', flights, o)
  redis.call('ZREM', deadlines, o)
  redis.call('XACK', stream, sub, f[4])
end

if op == 'ackread' then
  local f = held(ARGV[3], ARGV[4])
  if f then finish(ARGV[3], f) end
  return {f and 1 or 0, read(ARGV[5], tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8]), ARGV[9])}
end

if op == 'read' then
  return read(ARGV[3], tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6]), ARGV[7])
end

if op == 'beat' then
  redis.call('ZADD', presence, fmt(now + tonumber(ARGV[4])), ARGV[3])
  due_by(now + tonumber(ARGV[4]))
  return 1
end

if op == 'leave' then
  local consumer = ARGV[3]
  redis.call('ZREM', presence, consumer)
  pcall(redis.call, 'XGROUP', 'DELCONSUMER', stream, sub, consumer)
  local n = 0
  local all = redis.call('HGETALL', flights)
  for k = 1, #all, 2 do
    local f = delivery(all[k + 1])
    if f[5] == consumer then
      to_retry(all[k], now, f[3], f[4])
      n = n + 1
    end
  end
  -- Rule 7: what it left behind is due at once.
  if n > 0 then wake() end
  return n
end

if op == 'giveback' then
  -- Rule 6: the current, unexpired (swept above) deliveries of that read
  -- to that consumer go to the retry set, due now, as if never made (the
  -- attempt taken back; the cursor stays).
  local consumer, rid = ARGV[3], ARGV[4]
  local n = 0
  if rid == '0' then return 0 end
  local all = redis.call('HGETALL', flights)
  for k = 1, #all, 2 do
    local f = delivery(all[k + 1])
    if f[5] == consumer and f[6] == rid then
      to_retry(all[k], now, fmt(math.max(0, tonumber(f[3]) - 1)), f[4])
      n = n + 1
    end
  end
  -- Rule 7: wakes the topic's watchers (one waiting would wait for a
  -- deadline).
  if n > 0 then wake() end
  return n
end

-- Settlements: only the current, unexpired delivery (rule 5).
local o, tok = ARGV[3], ARGV[4]
local f = held(o, tok)
if not f then return 0 end

if op == 'extend' then
  local deadline = now + tonumber(ARGV[5])
  local rid = f[6] and ('|' .. f[6]) or ''
  redis.call('HSET', flights, o, f[1] .. '|' .. fmt(deadline) .. '|' .. f[3] .. '|' .. f[4] .. '|' .. f[5] .. rid)
  redis.call('ZADD', deadlines, fmt(deadline), o)
  due_by(deadline)
  return 1
end

if op == 'nack' then
  to_retry(o, now + tonumber(ARGV[5]), f[3], f[4])
  -- Rule 7: a subscriber waiting looks again to learn when it is due.
  wake()
  return 1
end

finish(o, f)
if op == 'dead' then
  -- The event as kept, or its offset alone if retention trimmed it.
  local e = redis.call('XRANGE', stream, f[4], f[4])
  local id = redis.call('HINCRBY', meta, 'dead:' .. sub, 1)
  local base = string.sub(dead_z, 1, -2)
  local h = base .. id .. ':y'
  redis.call('HSET', h, 'o', o, 'r', ARGV[5], 'z', fmt(now_us()))
  if e[1] then
    local k, v, p = entry(e[1])
    redis.call('HSET', h, 't', fmt(ms_of(f[4])), 'k', k, 'v', v, 'p', p)
  end
  redis.call('ZADD', dead_z, id, id)
  if redis.call('ZCARD', dead_z) > MAX_DEAD_KEPT then
    local oldest = redis.call('ZPOPMIN', dead_z)
    redis.call('DEL', base .. oldest[1] .. ':y')
  end
end
return 1
