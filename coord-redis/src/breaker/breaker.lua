-- Circuit breakers (after the prelude). One script, the operation an
-- argument; the rules are those of coord-api's spi/breaker/mod.rs (numbered
-- there, 1-10), and this file mirrors spi/breaker/machine.rs and window.rs
-- step by step, in the same integer arithmetic on the server's clock in µs.
-- KEYS: 1 record hash, 2 window list, 3 transition log list, 4 trials zset
-- (holder -> lease deadline, µs), 5 failing zset (instance -> last failure
-- report, µs; kept only with a quorum). The channel is KEYS[1] with its last
-- letter made 'c' (same slot).
-- ARGV: op, policy (empty for peek), seen, then
--   state
--   peek        (state of a breaker that has a record; nil, nothing made,
--               when it has none; its lifetime is not extended: rule 11)
--   report      generation, instance, calls, failures, slow
--   trial       holder, ttl µs, generation ('' for a new trial: a renewal
--               names its own, and only extends the live trial it has
--               there)
--   trial_done  generation, holder, calls, failures, slow
--   give_back_trial  generation, holder
--   manual      action (f force open | d disable | r reset), by, why
--
-- The record's fields: g generation, p phase (c closed, o open, h half-open,
-- f forced open, d disabled), P policy (as the caller wrote it), o opens,
-- u end of the open (µs), k last trial token, wc wf ws the window's total,
-- dc df ds the finished trials' total, f the generation of the last
-- transition dropped from the log, m the last manual action, b the
-- generation it was born with (which record it is: one lost and born again
-- has another).
-- A policy is 'c|t:<calls | span ns>:<failure bp>:<slow bp | n>:<minimum>:
-- <open ns>:<max open ns>:<trials>:<quorum>:<quorum span ns>'.
-- A window part is '<bucket>:<calls>:<failures>:<slow>' (bucket 0 in a
-- count window). A manual action is '<action>:<at µs>:<by's length>:<by><why>';
-- a transition '<generation>:<at µs>:<from>:<to>:<cause>:' then the tally
-- '<calls>:<failures>:<slow>' (cause t tripped, e open elapsed, p trials
-- passed, x trials failed) or the manual action (cause m).
--
-- Every number stays below 2^53 (exact in a double): µs since the epoch,
-- and rate products of windows up to 100,000 calls and tallies up to 2^36.
--
-- The hot path is a closed breaker's report: one HMGET, the window's list
-- (one push, a look at its front when it trims), one HSET of the totals
-- and the keys' lifetimes; no table is made but HMGET's and the reply.
local rec, win, log, trials, failing = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local KEPT = 16
local BUCKETS = 10

if op ~= 'state' and op ~= 'peek' and op ~= 'report' and op ~= 'trial' and op ~= 'trial_done'
    and op ~= 'give_back_trial' and op ~= 'manual' then
  return redis.error_reply('unknown breaker operation ' .. tostring(op))
end

local seen = tonumber(ARGV[3])
local r = redis.call('HMGET', rec, 'g', 'p', 'P', 'o', 'u', 'k', 'wc', 'wf', 'ws', 'dc', 'df', 'ds', 'f', 'm', 'b')
local gen, phase, policy, opens, open_until, token
local wc, wf, ws, dc, df, ds, floor, manual, born
-- Whole record to write (born, a transition), or some fields.
local all, window_changed, token_changed, done_changed = false, false, false, false
if r[1] then
  gen, phase, policy = tonumber(r[1]), r[2], r[3]
  opens, open_until, token = tonumber(r[4]), tonumber(r[5]), tonumber(r[6])
  wc, wf, ws = tonumber(r[7]), tonumber(r[8]), tonumber(r[9])
  dc, df, ds = tonumber(r[10]), tonumber(r[11]), tonumber(r[12])
  floor, manual, born = tonumber(r[13]), r[14], tonumber(r[15])
  -- A record written before 'b' was kept: named by its generation, which
  -- stays until its next transition, and that writes the name whole.
  born = born or gen
elseif op == 'peek' then
  -- Rule 11: a look births nothing.
  return false
else
  -- Rule 1: born closed with the caller's policy, from nothing: a record
  -- whose hash alone was lost (evicted) left its window, log, trials and
  -- failure reports, none of them this one's.
  redis.call('DEL', win, log, trials, failing)
  gen, phase, policy = token_after(0), 'c', ARGV[2]
  opens, open_until, token = 0, 0, 0
  wc, wf, ws, dc, df, ds, floor, manual = 0, 0, 0, 0, 0, 0, 0, ''
  born = gen
  all = true
end

local kind, size, fail_bp, slow_bp, minimum, open_ns, max_open_ns, ntrials, quorum, qspan_ns
local function read_policy()
  local k, s, f, sl, mi, o, mo, t, q, qs = string.match(policy,
    '^(%a):(%d+):(%d+):(%w+):(%d+):(%d+):(%d+):(%d+):(%d+):(%d+)$')
  kind, size, fail_bp, slow_bp, minimum = k, tonumber(s), tonumber(f), tonumber(sl), tonumber(mi)
  open_ns, max_open_ns, ntrials, quorum, qspan_ns = tonumber(o), tonumber(mo), tonumber(t), tonumber(q), tonumber(qs)
end
read_policy()

-- window.rs: bucket_us, the width of a time window's bucket.
local function bucket_us()
  return math.max(math.floor(math.floor(size / 1000) / BUCKETS), 1)
end

local function part(e)
  local b, c, f, s = string.match(e, '^(%d+):(%d+):(%d+):(%d+)$')
  return tonumber(b), tonumber(c), tonumber(f), tonumber(s)
end

-- Window::expire: a time window's buckets out of the span go.
local function expire(now)
  if kind ~= 't' or wc == 0 then return end
  local current = math.floor(now / bucket_us())
  while true do
    local front = redis.call('LINDEX', win, 0)
    if not front then break end
    local b, c, f, s = part(front)
    if b + BUCKETS > current then break end
    redis.call('LPOP', win)
    wc, wf, ws = math.max(wc - c, 0), math.max(wf - f, 0), math.max(ws - s, 0)
    window_changed = true
  end
end

-- Window::add, with Window::trim for a count window.
local function add(c, f, s, now)
  if c == 0 then return end
  wc, wf, ws = wc + c, wf + f, ws + s
  window_changed = true
  if kind == 'c' then
    redis.call('RPUSH', win, '0:' .. fmt(c) .. ':' .. fmt(f) .. ':' .. fmt(s))
    while wc > size do
      local excess = wc - size
      local _, oc, of, os = part(redis.call('LINDEX', win, 0))
      if oc <= excess then
        redis.call('LPOP', win)
        wc, wf, ws = wc - oc, math.max(wf - of, 0), math.max(ws - os, 0)
      else
        -- Tally::part: failures and slow calls in proportion, rounded down.
        local gf, gs = math.floor(of * excess / oc), math.floor(os * excess / oc)
        redis.call('LSET', win, 0, '0:' .. fmt(oc - excess) .. ':' .. fmt(of - gf) .. ':' .. fmt(os - gs))
        wc, wf, ws = wc - excess, math.max(wf - gf, 0), math.max(ws - gs, 0)
      end
    end
  else
    local bucket = math.floor(now / bucket_us())
    local last = redis.call('LINDEX', win, -1)
    local b, lc, lf, ls
    if last then b, lc, lf, ls = part(last) end
    if b == bucket then
      redis.call('LSET', win, -1, fmt(b) .. ':' .. fmt(lc + c) .. ':' .. fmt(lf + f) .. ':' .. fmt(ls + s))
    else
      redis.call('RPUSH', win, fmt(bucket) .. ':' .. fmt(c) .. ':' .. fmt(f) .. ':' .. fmt(s))
    end
    expire(now)
  end
end

-- window.rs: rates_reached.
local function rates_reached(c, f, s)
  if c == 0 then return false end
  if fail_bp <= 10000 and f * 10000 >= fail_bp * c then return true end
  return slow_bp ~= nil and slow_bp <= 10000 and s * 10000 >= slow_bp * c
end

-- Window::trips.
local function trips()
  local least = math.max(minimum, 1)
  if kind == 'c' then least = math.min(least, size) end
  return wc >= least and rates_reached(wc, wf, ws)
end

-- Rule 4: open_for * 2^(opens - 1), at most max_open_for, in µs.
local function open_time_us()
  local base, max = math.floor(open_ns / 1000), math.floor(max_open_ns / 1000)
  local doublings = math.min(math.max(opens - 1, 0), 40)
  return math.min(base * 2 ^ doublings, max)
end

-- Rule 7: one transition to `to`, its cause already spelled; the record is
-- written whole at the end.
local function transition(to, cause, now)
  local from = phase
  gen = math.max(gen + 1, now)
  phase = to
  redis.call('DEL', win, trials, failing)
  wc, wf, ws, dc, df, ds = 0, 0, 0, 0, 0, 0
  if to == 'o' then
    opens = opens + 1
    open_until = now + open_time_us()
  elseif to == 'c' then
    opens = 0
  end
  local n = redis.call('RPUSH', log, fmt(gen) .. ':' .. fmt(now) .. ':' .. from .. ':' .. to .. ':' .. cause)
  while n > KEPT do
    local dropped = redis.call('LPOP', log)
    floor = tonumber(string.match(dropped, '^%d+'))
    n = n - 1
  end
  all = true
  redis.call('PUBLISH', string.sub(rec, 1, -2) .. 'c', 'transition')
end

local function tally(c, f, s)
  return fmt(c) .. ':' .. fmt(f) .. ':' .. fmt(s)
end

-- Rule 2: the sweep. Trials live only in a half-open generation and
-- failure reports matter only with a quorum, so each is looked at only
-- then; the clock is read only by a step that needs it.
if kind == 't' and wc > 0 then expire(now_us()) end
if phase == 'h' then redis.call('ZREMRANGEBYSCORE', trials, '-inf', now_us()) end
if quorum > 1 then
  redis.call('ZREMRANGEBYSCORE', failing, '-inf', now_us() - math.floor(qspan_ns / 1000))
end
if phase == 'o' and now_us() >= open_until then
  transition('h', 'e:0:0:0', now_us())
end

-- The reply's first element: 1 done (state, manual), counted (report,
-- trial_done) or given back (give_back_trial), 0 not counted or refused,
-- or the token of a granted trial.
local flag = 0

if op == 'state' or op == 'peek' then
  flag = 1
elseif op == 'report' then
  -- Rule 3.
  local generation = tonumber(ARGV[4])
  if generation == gen and phase == 'c' then
    local c, f, s = tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8])
    add(c, f, s, (kind == 't') and now_us() or 0)
    if quorum > 1 and (f > 0 or s > 0) then
      redis.call('ZADD', failing, now_us(), ARGV[5])
      redis.call('PEXPIRE', failing, KEEP_MS)
    end
    if trips() and (quorum <= 1 or redis.call('ZCARD', failing) >= quorum) then
      transition('o', 't:' .. tally(wc, wf, ws), now_us())
    end
    flag = 1
  end
elseif op == 'trial' then
  -- Rule 5. A renewal (naming its generation) only extends the live trial
  -- its holder has in that generation: it never takes a slot.
  local holder, renewal = ARGV[4], ARGV[6] ~= ''
  if phase == 'h' and (not renewal or tonumber(ARGV[6]) == gen) then
    local now = now_us()
    local taken = redis.call('ZCARD', trials) + dc
    local own = redis.call('ZSCORE', trials, holder)
    if own or (not renewal and taken < ntrials) then
      redis.call('ZADD', trials, now + math.max(tonumber(ARGV[5]), 1), holder)
      redis.call('PEXPIRE', trials, KEEP_MS)
      token = math.max(math.max(token, gen) + 1, now)
      token_changed = true
      flag = token
    end
  end
elseif op == 'trial_done' then
  -- Rule 6.
  if tonumber(ARGV[4]) == gen and redis.call('ZREM', trials, ARGV[5]) == 1 then
    dc, df, ds = dc + tonumber(ARGV[6]), df + tonumber(ARGV[7]), ds + tonumber(ARGV[8])
    done_changed = true
    if dc >= ntrials then
      if rates_reached(dc, df, ds) then
        transition('o', 'x:' .. tally(dc, df, ds), now_us())
      else
        transition('c', 'p:' .. tally(dc, df, ds), now_us())
      end
    end
    flag = 1
  end
elseif op == 'give_back_trial' then
  -- Rule 6's give-back: the slot freed, nothing counted.
  if tonumber(ARGV[4]) == gen and redis.call('ZREM', trials, ARGV[5]) == 1 then
    flag = 1
  end
elseif op == 'manual' then
  -- Rule 8.
  local action, by = ARGV[4], ARGV[5]
  manual = action .. ':' .. fmt(math.max(now_us(), 1)) .. ':' .. #by .. ':' .. by .. ARGV[6]
  local to = action
  if action == 'r' then
    policy = ARGV[2]
    read_policy()
    to = 'c'
  end
  transition(to, 'm:' .. manual, now_us())
  flag = 1
end

if all then
  redis.call('HSET', rec, 'g', fmt(gen), 'p', phase, 'P', policy, 'o', fmt(opens),
    'u', fmt(open_until), 'k', fmt(token), 'wc', fmt(wc), 'wf', fmt(wf), 'ws', fmt(ws),
    'dc', fmt(dc), 'df', fmt(df), 'ds', fmt(ds), 'f', fmt(floor), 'm', manual, 'b', fmt(born))
else
  if window_changed then redis.call('HSET', rec, 'wc', fmt(wc), 'wf', fmt(wf), 'ws', fmt(ws)) end
  if token_changed then redis.call('HSET', rec, 'k', fmt(token)) end
  if done_changed then redis.call('HSET', rec, 'dc', fmt(dc), 'df', fmt(df), 'ds', fmt(ds)) end
end
-- The record, its window and its log live one MAX_TTL past the last step
-- on the breaker (a refresh every second keeps a breaker in use alive).
-- A peek keeps nothing alive (rule 11). What its sweep writes lands in
-- keys that exist and keep their lifetimes: a sweep only trims the window,
-- and its one transition (open to half-open) appends to a log that the
-- open's own transition made.
if op ~= 'peek' then
  redis.call('PEXPIRE', rec, KEEP_MS)
  redis.call('PEXPIRE', win, KEEP_MS)
  redis.call('PEXPIRE', log, KEEP_MS)
end

-- Rule 9: {flag, generation, phase, retry after µs (-1: none), window
-- calls, failures, slow, live trials, finished trials' calls, failures,
-- slow, opens, policy, manual action ('' none), the generation after which
-- every transition is kept (the floor; the caller judges what it missed),
-- the generation the record was born with, then the kept transitions after
-- `seen`, oldest first}.
local retry = -1
if phase == 'o' then retry = math.max(open_until - now_us(), 0) end
local live = 0
if phase == 'h' then live = redis.call('ZCARD', trials) end
local out = {flag, gen, phase, retry, wc, wf, ws, live, dc, df, ds, opens, policy, manual, floor, born}
if seen < gen then
  for _, t in ipairs(redis.call('LRANGE', log, 0, -1)) do
    if tonumber(string.match(t, '^%d+')) > seen then
      out[#out + 1] = t
    end
  end
end
return out
