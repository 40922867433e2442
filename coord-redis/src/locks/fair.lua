-- Fair queues (decision 0033), after the prelude and ahead of lock.lua or
-- semaphore.lua: a queued acquisition ('queued') or a waiter giving its
-- place back ('leave'). Every other operation passes through untouched.
--
-- The last two KEYS are the key's queue (zset holder -> arrival, server µs,
-- strictly increasing) and its waiters' places (zset holder -> deadline,
-- server ms): every place a lease of its waiter, renewed by asking again.
-- The last five ARGV are the channel, the holder, the waiter TTL (ms),
-- enqueue ('1' or '0') and the space ('l' lock, 's' semaphore).
--   queued  KEYS the space's keys, queue, places
--           ARGV the space's acquire arguments (a semaphore's count always
--           given), then the five
--   leave   KEYS queue, places  ARGV op, then the five: the holder's place
--           goes; 1 if it had one, else 0
--   list    KEYS the space's keys, queue, places  ARGV op: the operations
--           listing's read; goes on as 'inspect', whose rows are followed
--           by {'q', '', 0, live places, 0, 0} when any place is live
-- A queued step of a semaphore asked with another limit than its live
-- permits' answers {-1, stored limit} first, and a lock's re-entry of a
-- reentrant lease at MAX_REENTRANT_HOLDS {-2, holds}, changing nothing
-- (taking no place). Else it
-- drops the places whose deadline passed, takes or renews
-- the holder's place (enqueue), and refuses ({0, ms until the head's place
-- ends}) unless the holder heads the queue (not enqueuing: unless the queue
-- is empty); then it goes on as the script's 'acquire', whose grant calls
-- `on_grant`: the holder's place goes in the same step. A step after which
-- the queue has a new head publishes 'freed' (every waiter looks again).
-- The most holds a reentrant lease counts (spi::MAX_REENTRANT_HOLDS; a
-- re-entry beyond is answered {-2, holds}, here or by lock.lua).
local MAX_REENTRANT_HOLDS = 65535
local on_grant, queued
if op == 'list' then
  queued = redis.call('ZCOUNT', KEYS[#KEYS], '(' .. now_ms(), '+inf')
  op = 'inspect'
elseif op == 'queued' or op == 'leave' then
  local q, qd = KEYS[#KEYS - 1], KEYS[#KEYS]
  local n = #ARGV
  local channel, who = ARGV[n - 4], ARGV[n - 3]
  local wttl, enqueue, space = tonumber(ARGV[n - 2]), ARGV[n - 1] == '1', ARGV[n]
  local now = now_ms()
  if op == 'queued' and space == 's'
      and redis.call('ZCOUNT', KEYS[1], '(' .. now, '+inf') > 0 then
    -- Another N is refused before the queue, as semaphore.lua refuses it:
    -- it takes no place and never waits (N is fixed while permits live).
    local stored = tonumber(redis.call('GET', KEYS[3]) or '0')
    if stored ~= tonumber(ARGV[5]) then return {-1, stored} end
  end
  if op == 'queued' and space == 'l' and ARGV[4] == 'r' then
    -- So is a re-entry past the holds' limit, which lock.lua's grant
    -- refuses ({-2, holds}) after the place was taken.
    local cur = redis.call('GET', KEYS[1])
    local holds, held_by
    if cur then holds, held_by = string.match(cur, '^[rR]|(%d+)|%d+|(.*)$') end
    if held_by == who and tonumber(holds) >= MAX_REENTRANT_HOLDS then
      return {-2, tonumber(holds)}
    end
  end
  local first = redis.call('ZRANGE', q, 0, 0)[1]
  local gone = redis.call('ZRANGEBYSCORE', qd, '-inf', now)
  for i = 1, #gone, 500 do
    local last = math.min(i + 499, #gone)
    redis.call('ZREM', qd, unpack(gone, i, last))
    redis.call('ZREM', q, unpack(gone, i, last))
  end
  -- The queue lives as long as its latest place.
  local function keep_queue()
    local top = redis.call('ZRANGE', qd, -1, -1, 'WITHSCORES')
    if top[2] then
      local ms = tonumber(top[2]) - now
      redis.call('PEXPIRE', q, ms)
      redis.call('PEXPIRE', qd, ms)
    else
      redis.call('DEL', q, qd)
    end
  end
  -- Wakes every waiter when someone else than `first` (and `me`) heads.
  local function wake_new_head(me)
    local head = redis.call('ZRANGE', q, 0, 0)[1]
    if head and head ~= first and head ~= me then
      redis.call('PUBLISH', channel, 'freed')
    end
    return head
  end
  if op == 'leave' then
    local had = redis.call('ZREM', q, who)
    redis.call('ZREM', qd, who)
    keep_queue()
    wake_new_head(nil)
    return had
  end
  if enqueue then
    if not redis.call('ZSCORE', q, who) then
      local at = now_us()
      local tail = redis.call('ZRANGE', q, -1, -1, 'WITHSCORES')
      if tail[2] and tonumber(tail[2]) >= at then at = tonumber(tail[2]) + 1 end
      redis.call('ZADD', q, at, who)
    end
    redis.call('ZADD', qd, now + wttl, who)
    if space == 's' and redis.call('PTTL', KEYS[6]) < wttl then
      -- A semaphore's releases wake every waiter while a fair one waits.
      redis.call('SET', KEYS[6], '1', 'PX', wttl)
    end
  end
  keep_queue()
  local head = wake_new_head(who)
  if head and head ~= who then
    -- (A lock found free with someone else at the head: the release that
    -- freed it woke that head by name, lock.lua; an expiry, a force
    -- release or a release with no live head in line woke every waiter.)
    local ends = tonumber(redis.call('ZSCORE', qd, head)) - now
    return {0, math.max(ends, 0)}
  end
  on_grant = function()
    redis.call('ZREM', q, who)
    redis.call('ZREM', qd, who)
    keep_queue()
    if space == 's' and redis.call('EXISTS', q) == 1 then
      -- The next in line may fit too.
      redis.call('PUBLISH', channel, 'freed')
    end
  end
  op = 'acquire'
end
