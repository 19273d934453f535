-- Shared by the job scripts. Every key of a queue shares its hash tag, so one script
-- touches one Cluster slot. KEYS: 1 waiting (zset, score = priority band + sequence),
-- 2 delayed (zset, run-at ms), 3 active (zset, lease end ms), 4 completed (zset, finish ms),
-- 5 dead (zset, finish ms), 6 unique (hash, unique key -> id), 7 meta (hash: paused, seq,
-- counters, schedule ticks, `nd`), 8 signal (list, pushed when work is ready).
-- `nd`: no delayed job runs before it (absent: unknown, look), so a lease looks for due
-- delayed jobs only once one may be due; `delay` keeps it true.
-- ARGV[1]: the job hash prefix (`rk:{q:NAME}:j:`). Clock: Redis TIME.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local prefix = ARGV[1]

-- Higher priority first, then enqueue order; priorities -1000..1000, sequences < 2^40.
local function ready_score(priority, seq)
  return (1000 - tonumber(priority)) * 1099511627776 + tonumber(seq)
end

local function make_waiting(id, key)
  local v = redis.call('HMGET', key, 'pr', 'q')
  redis.call('HSET', key, 's', 'waiting')
  redis.call('ZADD', KEYS[1], ready_score(v[1], v[2]), id)
end

-- `nd` when no job is delayed: later than any run-at (those are at most a year ahead).
local NO_DELAYED_JOB = 1e15

-- No job in KEYS[2] runs before meta's `nd`; absent means unknown (the next lease looks).
local function delay(id, run)
  redis.call('ZADD', KEYS[2], run, id)
  local nd = redis.call('HGET', KEYS[7], 'nd')
  if nd and run < tonumber(nd) then redis.call('HSET', KEYS[7], 'nd', run) end
end

local function signal()
  -- Idle workers pop it, so it grows only while every worker is busy (none is blocked on
  -- it then): cut back to 16 once it passes 64, so a busy queue pays one command per
  -- signal, not two.
  if redis.call('LPUSH', KEYS[8], 1) > 64 then redis.call('LTRIM', KEYS[8], 0, 15) end
end

-- `u`: the job's unique key when the caller has read it already (false: not stored).
local function forget_unique(id, key, u)
  if u == nil then u = redis.call('HGET', key, 'u') end
  if u and u ~= '' and redis.call('HGET', KEYS[6], u) == id then
    redis.call('HDEL', KEYS[6], u)
  end
end

-- Deletes finished jobs beyond `count` or older than `age` ms (at most 200 per call), in
-- one DEL and one ZREM.
local function trim(set, count, age)
  local ids = redis.call('ZRANGEBYSCORE', set, '-inf', now - age, 'LIMIT', 0, 100)
  local old = #ids
  local n = redis.call('ZCARD', set) - old
  if n > count then
    -- The oldest by rank after the `old` ones (the lowest scores come first either way).
    for _, id in ipairs(redis.call('ZRANGE', set, old, old + math.min(n - count, 100) - 1)) do
      ids[#ids + 1] = id
    end
  end
  if #ids == 0 then return end
  local keys = {}
  for i, id in ipairs(ids) do keys[i] = prefix .. id end
  redis.call('DEL', unpack(keys))
  redis.call('ZREM', set, unpack(ids))
end

local function kill(id, key, keep_count, keep_age)
  redis.call('HSET', key, 's', 'dead', 'f', now)
  redis.call('ZADD', KEYS[5], now, id)
  forget_unique(id, key)
  trim(KEYS[5], keep_count, keep_age)
end
