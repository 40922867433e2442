-- Job graphs (after the prelude). One script, the operation an argument;
-- the rules are those of coord-api's spi/graphs.rs, numbered there (1-9).
-- KEYS: 1 the graph's ready zset (member -> ready time, server ms), 2 its
-- running zset (member -> lease deadline, server ms), 3 its token counter
-- (next_token), 4 the run's record hash (operations naming a run). A
-- member is '<run's byte length>:<run>/<node>'. Every name of the graph
-- starts with the same base (KEYS[1] without its last letter): run records
-- are <base><run>:h (a step that sweeps or takes reaches other runs of the
-- graph, all in the graph's slot), run channels <base><run>:c, the graph's
-- ready channel <base>c.
-- ARGV: op, run ('' for take), then
--   submit    spec (canonical encoding: per node '<name>\t<max attempts>\t
--             <c|r>\t<edges>\n', edges '<parent index><s|f|a>' joined
--             by ','), retention_ms
--   take      worker instance, ttl_ms, holder ('<instance>#<nonce>')
--   renew     node, token, ttl_ms
--   complete  node, token, 's' result | 'f' error retry_ms ('' for none),
--             then, to take the next node in the same step, worker instance,
--             ttl_ms, holder (rule 4)
--   giveback  holder (rule 4's give-back)
--   cancel    reason
--   status    '1' with results | '0' without
--
-- The run record's fields (names hold no control character, so a field
-- '<letter>:<name>' is a node's and the others are the run's):
--   spec n st why sub end tr left fail ret
--     the spec as submitted, node count, run state (R running, S
--     succeeded, F failed, C cancelled), cancel reason (once cancelled),
--     submitted and ended at (server µs), transitions, nodes not ended,
--     '1' once a node failed, retention (ms)
--   s:<node>  '<max attempts>\t<c|r>\t<parents, in edge order>\t<children,
--             in declaration order, each '<s|f|a><name>' (its edge's
--             condition)>', the lists joined by '\n'
--   d:<node>  '<state> <attempts> <waiting> <token> <deadline ms>
--             <ready ms> <started µs> <ended µs>' (state P pending, R
--             ready, U running, S succeeded, F failed, K skipped, C
--             cancelled; waiting: edges not yet satisfied; 0: none)
--   w:<node> e:<node> r:<node> b:<node>  worker instance, last error,
--             result, the upstream node that skipped or cancelled it
--   h:<node>  the holder of its latest take (instance and nonce), which a
--             give-back names
--   k:<node>  '<token> <state>': the last attempt a completion ended and
--             the state it left; that completion sent again is answered
--             'already' with it (rule 4)
-- A step keeps the runs it touches in contexts (their nodes read once) and
-- writes each run's changes with one HSET at its end, then PUBLISHes.
local ready_z, running_z, counter = KEYS[1], KEYS[2], KEYS[3]
local base = string.sub(ready_z, 1, -2)
local run_arg = ARGV[2]

-- The contexts of the runs this step touched, by name.
local runs = {}
-- How many nodes became ready in this step and were not taken in it
-- (wakes watch_ready when any).
local woke = 0

local function member(run, name)
  return fmt(#run) .. ':' .. run .. '/' .. name
end

-- The run and node of a member.
local function split(m)
  local len, rest = string.match(m, '^(%d+):(.*)$')
  len = tonumber(len)
  return string.sub(rest, 1, len), string.sub(rest, len + 2)
end

-- Node `name` of R from its fields d and s (kept in R's context).
local function parse(R, name, d, s)
  local st, a, w, tok, dl, rd, su, eu =
    string.match(d, '^(%u) (%d+) (%d+) (%d+) (%d+) (%d+) (%d+) (%d+)$')
  local max, pol, parents, children = string.match(s, '^(%d+)\t(%a)\t([^\t]*)\t([^\t]*)$')
  local N = {
    name = name, st = st, att = tonumber(a), wait = tonumber(w), tok = tok,
    dl = tonumber(dl), rd = tonumber(rd), su = su, eu = eu,
    max = tonumber(max), pol = pol, parents = parents, children = children,
  }
  R.nodes[name] = N
  return N
end

-- The context of `run` (nil when it has no record) and, when `name` is
-- given, its node of that name (nil when there is none), in one HMGET.
local function load(run, name)
  local R = runs[run]
  local fields
  if R then
    if not name or R.nodes[name] then return R, name and R.nodes[name] end
    fields = {'d:' .. name, 's:' .. name}
  else
    fields = {'st', 'why', 'left', 'fail', 'tr', 'ret'}
    if name then
      fields[7], fields[8] = 'd:' .. name, 's:' .. name
    end
  end
  local h = base .. run .. ':h'
  local v = redis.call('HMGET', h, unpack(fields))
  local k = 1
  if not R then
    if not v[1] then return nil, nil end
    R = {
      name = run, h = h, st = v[1], why = v[2] or nil, left = tonumber(v[3]),
      fail = v[4] == '1', tr = tonumber(v[5]), ret = tonumber(v[6]),
      nodes = {}, w = {}, dirty = false, ended = false,
    }
    runs[run] = R
    k = 7
  end
  if not name or not v[k] then return R, nil end
  return R, parse(R, name, v[k], v[k + 1])
end

-- Node `name` of R (one that exists).
local function node(R, name)
  return R.nodes[name] or select(2, load(R.name, name))
end

-- Sets field f of R's record at the end of the step.
local function put(R, f, value)
  R.w[f] = value
end

local function save(R, N)
  put(R, 'd:' .. N.name, N.st .. ' ' .. fmt(N.att) .. ' ' .. fmt(N.wait) .. ' ' .. N.tok .. ' '
    .. fmt(N.dl) .. ' ' .. fmt(N.rd) .. ' ' .. N.su .. ' ' .. N.eu)
end

-- The names of R's nodes in declaration order (from its spec).
local function names(R)
  local list = {}
  for name in string.gmatch(redis.call('HGET', R.h, 'spec'), '([^\t\n]+)\t[^\n]*\n') do
    list[#list + 1] = name
  end
  return list
end

-- One transition of a node of R (rule 8).
local function changed(R)
  R.tr = R.tr + 1
  R.dirty = true
end

-- N is ready from server ms `at`.
local function make_ready(R, N, at)
  N.st, N.rd = 'R', at
  save(R, N)
  redis.call('ZADD', ready_z, at, member(R.name, N.name))
  woke, N.made = woke + 1, true
  changed(R)
end

-- Rule 7: the run ends (written by flush).
local function finish(R)
  if R.st ~= 'R' then return end
  if R.why then R.st = 'C' elseif R.fail then R.st = 'F' else R.st = 'S' end
  R.ended = true
end

-- Rule 6: cancels R (neither ended nor cancelled): every pending and ready
-- node is cancelled (by none); returns how many attempts run.
local function cancel_run(R, reason)
  if R.st ~= 'R' or R.why then return 0 end
  R.why, R.dirty = reason, true
  put(R, 'why', reason)
  local all = names(R)
  local missing = {}
  for _, name in ipairs(all) do
    if not R.nodes[name] then
      missing[#missing + 1] = 'd:' .. name
      missing[#missing + 1] = 's:' .. name
    end
  end
  for k = 1, #missing, 400 do
    local last = math.min(k + 399, #missing)
    local v = redis.call('HMGET', R.h, unpack(missing, k, last))
    for j = 1, #v, 2 do
      parse(R, string.sub(missing[k + j - 1], 3), v[j], v[j + 1])
    end
  end
  local running, unready = 0, {}
  local now = fmt(now_us())
  for _, name in ipairs(all) do
    local N = R.nodes[name]
    if N.st == 'U' then
      running = running + 1
    elseif N.st == 'P' or N.st == 'R' then
      if N.st == 'R' then unready[#unready + 1] = member(R.name, name) end
      N.st, N.eu = 'C', now
      save(R, N)
      changed(R)
      R.left = R.left - 1
    end
  end
  for k = 1, #unready, 400 do
    redis.call('ZREM', ready_z, unpack(unready, k, math.min(k + 399, #unready)))
  end
  if R.left == 0 then finish(R) end
  return running
end

-- Ends N as `st` (S, F, K or C), by node `by` (or none), and resolves its
-- dependents (rule 5), recursively; the run ends with its last node (rule
-- 7), after which a CancelRun failure finds nothing to cancel.
local function end_node(R, N, st, by)
  N.st, N.eu = st, fmt(now_us())
  save(R, N)
  if by then put(R, 'b:' .. N.name, by.name) end
  changed(R)
  R.left = R.left - 1
  if st == 'F' then R.fail = true end
  for on, c in string.gmatch(N.children, '(%a)([^\n]+)') do
    local C = node(R, c)
    if C.st == 'P' then
      local ok
      if on == 's' then
        ok = st == 'S'
      elseif on == 'f' then
        ok = st == 'F'
      else
        ok = st ~= 'C'
      end
      if ok then
        C.wait = C.wait - 1
        if C.wait == 0 then make_ready(R, C, now_ms()) else save(R, C) end
      elseif st == 'C' then
        end_node(R, C, 'C', N)
      else
        end_node(R, C, 'K', N)
      end
    end
  end
  if R.left == 0 then finish(R) end
  if st == 'F' and N.pol == 'r' then
    cancel_run(R, 'node "' .. N.name .. '" failed')
  end
end

-- Writes what the step changed in each run's record (an ended run kept for
-- its retention) and wakes the watchers (rule 9).
local function flush()
  for _, R in pairs(runs) do
    if R.dirty then
      put(R, 'tr', fmt(R.tr))
      put(R, 'left', fmt(R.left))
      put(R, 'fail', R.fail and '1' or '0')
      if R.ended then
        put(R, 'st', R.st)
        put(R, 'end', fmt(now_us()))
      end
    end
    local f = {}
    for k, v in pairs(R.w) do
      f[#f + 1] = k
      f[#f + 1] = v
      if #f >= 400 then
        redis.call('HSET', R.h, unpack(f))
        f = {}
      end
    end
    if #f > 0 then redis.call('HSET', R.h, unpack(f)) end
    R.w = {}
    if R.ended then redis.call('PEXPIRE', R.h, R.ret) end
    if R.dirty then redis.call('PUBLISH', base .. R.name .. ':c', 'changed') end
    R.dirty, R.ended = false, false
  end
  if woke > 0 then
    redis.call('PUBLISH', base .. 'c', 'ready')
    woke = 0
  end
end

-- The earliest lease deadline of the graph (server ms), if any.
local function earliest()
  local first = redis.call('ZRANGE', running_z, 0, 0, 'WITHSCORES')
  return first[2] and tonumber(first[2]) or nil
end

-- Rule 1: every expired lease of the graph. Returns the earliest lease
-- deadline left (server ms), if any.
local function sweep()
  local first = redis.call('ZRANGE', running_z, 0, 0, 'WITHSCORES')
  if not first[2] then return nil end
  if tonumber(first[2]) > now_ms() then return tonumber(first[2]) end
  local due = redis.call('ZRANGEBYSCORE', running_z, '-inf', now_ms())
  for k = 1, #due, 400 do
    redis.call('ZREM', running_z, unpack(due, k, math.min(k + 399, #due)))
  end
  for _, m in ipairs(due) do
    local R, N = load(split(m))
    if N and N.st == 'U' then
      if R.why then
        end_node(R, N, 'C', nil)
      else
        put(R, 'e:' .. N.name, 'lease expired')
        if N.att < N.max then
          make_ready(R, N, now_ms())
        else
          end_node(R, N, 'F', nil)
        end
      end
    end
  end
  -- Later reads in this step see what the sweep did.
  flush()
  return earliest()
end

-- Rule 3: takes the ready node of the graph that has been ready longest
-- for `worker` under a lease of `ttl` ms, after a sweep; `lease` is the
-- earliest deadline (nil: none), or 'unknown' to read it if needed. The
-- reply; the step's changes written by flush. `holder` is kept for a
-- give-back.
local function take(worker, ttl, lease, holder)
  while true do
    local first = redis.call('ZPOPMIN', ready_z)
    local m, at = first[1], tonumber(first[2])
    if lease == 'unknown' and (not m or at > now_ms()) then lease = earliest() end
    if not m then
      flush()
      return {'idle', lease and math.max(0, lease - now_ms()) or -1}
    end
    if at > now_ms() then
      redis.call('ZADD', ready_z, at, m)
      if lease and lease < at then at = lease end
      flush()
      return {'idle', at - now_ms()}
    end
    local R, N = load(split(m))
    -- (Anything else is a member whose run was deleted from outside.)
    if N and N.st == 'R' and not R.why then
      -- Made ready in this step and taken in it: nobody needs waking.
      if N.made then woke, N.made = woke - 1, nil end
      local tok = next_token(counter, ttl + KEEP_MS)
      N.st, N.att, N.tok = 'U', N.att + 1, fmt(tok)
      N.dl, N.su = now_ms() + ttl, fmt(now_us())
      save(R, N)
      put(R, 'w:' .. N.name, worker)
      put(R, 'h:' .. N.name, holder)
      redis.call('ZADD', running_z, N.dl, m)
      changed(R)
      -- Written first: the parents' outcomes are read from the record,
      -- which must hold what this step's completion (if any) recorded.
      flush()
      local outcomes = {}
      if N.parents ~= '' then
        local fields = {}
        for p in string.gmatch(N.parents, '[^\n]+') do
          fields[#fields + 1] = 'd:' .. p
          fields[#fields + 1] = 'r:' .. p
          fields[#fields + 1] = 'e:' .. p
          fields[#fields + 1] = 'b:' .. p
          outcomes[#outcomes + 1] = p
        end
        local v = redis.call('HMGET', R.h, unpack(fields))
        local parents = outcomes
        outcomes = {}
        for k, p in ipairs(parents) do
          local o = 4 * (k - 1)
          local st = string.sub(v[o + 1] or 'C', 1, 1)
          local detail = ''
          if st == 'S' then
            detail = v[o + 2] or ''
          elseif st == 'F' then
            detail = v[o + 3] or ''
          elseif st == 'K' then
            detail = v[o + 4] or ''
          end
          outcomes[#outcomes + 1] = p
          outcomes[#outcomes + 1] = st
          outcomes[#outcomes + 1] = detail
        end
      end
      return {'taken', R.name, N.name, N.att, tok, outcomes}
    end
  end
end

if op == 'submit' then
  local spec, ret = ARGV[3], ARGV[4]
  local h = KEYS[4]
  sweep()
  local stored = redis.call('HGET', h, 'spec')
  if stored then
    return {'exists', stored == spec and 1 or 0}
  end
  local nodes = {}
  for name, max, pol, edges in string.gmatch(spec, '([^\t\n]+)\t(%d+)\t(%a)\t([^\t\n]*)\n') do
    nodes[#nodes + 1] = {name = name, max = max, pol = pol, edges = edges, parents = {}, children = {}}
  end
  for _, N in ipairs(nodes) do
    for p, on in string.gmatch(N.edges, '(%d+)(%a)') do
      local P = nodes[tonumber(p) + 1]
      N.parents[#N.parents + 1] = P.name
      P.children[#P.children + 1] = on .. N.name
    end
  end
  local now = fmt(now_ms())
  local fields, roots = {}, {}
  for _, N in ipairs(nodes) do
    local waiting = #N.parents
    local f = fields
    f[#f + 1], f[#f + 2] = 's:' .. N.name,
      N.max .. '\t' .. N.pol .. '\t' .. table.concat(N.parents, '\n') .. '\t' .. table.concat(N.children, '\n')
    if waiting == 0 then
      roots[#roots + 1] = now
      roots[#roots + 1] = member(run_arg, N.name)
      f[#f + 1], f[#f + 2] = 'd:' .. N.name, 'R 0 0 0 0 ' .. now .. ' 0 0'
    else
      f[#f + 1], f[#f + 2] = 'd:' .. N.name, 'P 0 ' .. fmt(waiting) .. ' 0 0 0 0 0'
    end
    if #f >= 400 then
      redis.call('HSET', h, unpack(f))
      fields = {}
    end
  end
  redis.call('HSET', h, 'spec', spec, 'n', fmt(#nodes), 'st', 'R', 'sub', fmt(now_us()), 'tr', '0',
    'left', fmt(#nodes), 'fail', '0', 'ret', ret, unpack(fields))
  for k = 1, #roots, 400 do
    redis.call('ZADD', ready_z, unpack(roots, k, math.min(k + 399, #roots)))
  end
  redis.call('PUBLISH', base .. 'c', 'ready')
  redis.call('PUBLISH', base .. run_arg .. ':c', 'changed')
  return {'created'}
elseif op == 'take' then
  return take(ARGV[3], tonumber(ARGV[4]), sweep(), ARGV[5])
elseif op == 'giveback' then
  -- Rule 4's give-back: the running attempt of exactly that holder (the
  -- sweep returned the expired ones) is ready again, its attempt taken
  -- back; cancelled in a cancelled run. A give-back is rare: it reads the
  -- holder of every running attempt of the graph.
  local holder = ARGV[3]
  sweep()
  local reply = 0
  for _, m in ipairs(redis.call('ZRANGE', running_z, 0, -1)) do
    local R, N = load(split(m))
    if N and N.st == 'U' and redis.call('HGET', R.h, 'h:' .. N.name) == holder then
      redis.call('ZREM', running_z, m)
      put(R, 'h:' .. N.name, '')
      N.att = N.att - 1
      if R.why then
        end_node(R, N, 'C', nil)
      else
        make_ready(R, N, now_ms())
      end
      reply = 1
      break
    end
  end
  flush()
  return reply
elseif op == 'renew' then
  local name, tok, ttl = ARGV[3], ARGV[4], tonumber(ARGV[5])
  sweep()
  -- 1 renewed, 2 the run is cancelled, 0 lost.
  local reply = 0
  local R, N = load(run_arg, name)
  if N and N.st == 'U' and N.tok == tok then
    if R.why then
      reply = 2
    else
      N.dl = now_ms() + ttl
      save(R, N)
      redis.call('ZADD', running_z, 'XX', N.dl, member(R.name, N.name))
      reply = 1
    end
  end
  flush()
  return reply
elseif op == 'complete' then
  local name, tok, kind, payload, retry = ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7]
  sweep()
  local R, N = load(run_arg, name)
  if not N then return {'stale', ''} end
  if N.st ~= 'U' or N.tok ~= tok then
    local done, st = string.match(redis.call('HGET', R.h, 'k:' .. name) or '', '^(%d+) (%u)$')
    if done == tok then return {'already', st} end
    return {'stale', N.st}
  end
  redis.call('ZREM', running_z, member(R.name, N.name))
  if kind == 's' then
    put(R, 'r:' .. N.name, payload)
    -- Only an earlier attempt can have left an error.
    if N.att > 1 then redis.call('HDEL', R.h, 'e:' .. N.name) end
    end_node(R, N, 'S', nil)
  else
    put(R, 'e:' .. N.name, payload)
    if R.why then
      end_node(R, N, 'C', nil)
    elseif retry ~= '' and N.att < N.max then
      make_ready(R, N, now_ms() + tonumber(retry))
    else
      end_node(R, N, 'F', nil)
    end
  end
  put(R, 'k:' .. N.name, tok .. ' ' .. N.st)
  local reply = {'recorded', N.st, R.st}
  if ARGV[8] then
    -- The next node, in the same step (the earliest deadline is read
    -- again if needed: this completion removed its own).
    reply[4] = take(ARGV[8], tonumber(ARGV[9]), 'unknown', ARGV[10])
  else
    flush()
  end
  return reply
elseif op == 'cancel' then
  sweep()
  local R = load(run_arg)
  local reply
  if not R then
    reply = {'absent'}
  elseif R.st ~= 'R' or R.why then
    reply = {'ended', R.st}
  else
    reply = {'cancelled', cancel_run(R, ARGV[3])}
  end
  flush()
  return reply
elseif op == 'status' then
  local results = ARGV[3] == '1'
  sweep()
  local r = redis.call('HMGET', KEYS[4], 'st', 'tr', 'why', 'sub', 'end')
  if not r[1] then return {} end
  local now = now_ms()
  local reply = {r[1], tonumber(r[2]), r[3], tonumber(r[4]), tonumber(r[5] or '0')}
  local all = names({h = KEYS[4]})
  local per = results and 5 or 4
  for k = 1, #all, 200 do
    local fields = {}
    local last = math.min(k + 199, #all)
    for j = k, last do
      local name = all[j]
      fields[#fields + 1] = 'd:' .. name
      fields[#fields + 1] = 'w:' .. name
      fields[#fields + 1] = 'e:' .. name
      fields[#fields + 1] = 'b:' .. name
      if results then fields[#fields + 1] = 'r:' .. name end
    end
    local v = redis.call('HMGET', KEYS[4], unpack(fields))
    for j = k, last do
      local o = (j - k) * per
      local st, a, _, t, dl, rd, su, eu =
        string.match(v[o + 1], '^(%u) (%d+) (%d+) (%d+) (%d+) (%d+) (%d+) (%d+)$')
      local expires, ready_in = -1, -1
      if st == 'U' then expires = math.max(0, tonumber(dl) - now) end
      if st == 'R' then ready_in = math.max(0, tonumber(rd) - now) end
      reply[#reply + 1] = {
        all[j], st, tonumber(a), tonumber(t), v[o + 2], expires, ready_in,
        tonumber(su), tonumber(eu), v[o + 3], v[o + 4], results and v[o + 5] or false,
      }
    end
  end
  return reply
end
return redis.error_reply('coord: unknown graph operation ' .. tostring(op))
