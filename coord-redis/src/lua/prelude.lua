-- The prelude of every coord script, ahead of the family's own (see
-- src/eval.rs). It reads nothing and writes nothing by itself: the server's
-- clock is read on first use, so an operation that needs no time (a release,
-- a busy lock, a read of the leader) never pays for TIME.
--
-- ARGV[1] is the operation; the rest of KEYS and ARGV is the family's.
local op = ARGV[1]

-- How long state that must not go backwards while in use (seq counters,
-- attempt counts, the token counters of elections and jobs) outlives its last
-- use, in ms: one MAX_TTL (24 h).
local KEEP_MS = 86400000
-- How long the lock family's token counters outlive the lease they were
-- drawn for, in ms. Locks are many and often short-lived: an hour keeps their
-- tokens increasing through a clock step back of that long, and a key no
-- longer used leaves nothing behind after it.
local LOCK_COUNTER_KEEP_MS = 3600000

local now_us_read
-- The server's time in microseconds (TIME, read once per script run).
local function now_us()
  if not now_us_read then
    local t = redis.call('TIME')
    -- (Arithmetic converts each string once; tonumber would twice.)
    now_us_read = t[1] * 1000000 + t[2]
  end
  return now_us_read
end

-- The server's time in milliseconds (deadlines).
local function now_ms()
  return math.floor(now_us() / 1000)
end

-- An integer as Redis stores it (no exponent, no fraction).
local function fmt(n)
  return string.format('%d', n)
end

-- The fencing-token rule, FencingToken::next_after: the next token on
-- `counter` (a string key) is max(stored + 1, server time in µs), and it is
-- stored, to live `keep_ms` (at least the grant's TTL). While the counter
-- lives, tokens increase even if the server clock steps back; once it is
-- gone (expired, or lost in a restart without persistence) the clock alone
-- keeps them above every token it gave before. `floor` (optional): a token
-- given before that the counter may have lost; the next one is above it too.
--
-- One call on the common path (the clock ahead of the counter): the clock's
-- reading is stored and the previous value read in the same SET … GET
-- (Redis 6.2); the counter is written again only when the token is not the
-- clock's.
local function next_token(counter, keep_ms, floor)
  local now = now_us()
  local prev = redis.call('SET', counter, fmt(now), 'PX', keep_ms, 'GET')
  local stored = math.max(tonumber(prev or '0'), floor or 0)
  local tok = math.max(stored + 1, now)
  if tok ~= now then
    redis.call('SET', counter, fmt(tok), 'PX', keep_ms)
  end
  return tok
end

-- The same rule for a family that keeps its counter where it reads other
-- state anyway (one field of a hash it reads and writes on every grant):
-- the next token after `stored` (a number, 0 when there is none); the
-- caller stores what it gives.
local function token_after(stored)
  return math.max(stored + 1, now_us())
end

