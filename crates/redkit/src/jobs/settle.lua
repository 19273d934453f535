-- Ends attempt ARGV[3] of job ARGV[2] with ARGV[4]: 'ack', 'fail', 'release', or 'ack!'
-- (an ack made while Redis was away: completes the job whatever its lease, unless it is
-- finished already). ARGV[5]: error, ARGV[6]: jitter in [0, 1), ARGV[7..10]: retention
-- (completed count, completed age ms, dead count, dead age ms), ARGV[11]: events channel,
-- ARGV[12]: the settling instance (so it can skip its own announcements).
-- Returns completed | retrying | dead | released | lost.
local id, outcome = ARGV[2], ARGV[4]
local key = prefix .. id
local v = redis.call('HMGET', key, 's', 't', 'a', 'ma', 'bk', 'bd', 'bm')
if not v[1] then return 'lost' end
if outcome == 'ack!' then
  if v[1] == 'completed' or v[1] == 'dead' then return 'lost' end
elseif v[1] ~= 'active' or v[2] ~= ARGV[3] then
  return 'lost'
end
for i = 1, 3 do redis.call('ZREM', KEYS[i], id) end
redis.call('HDEL', key, 't', 'l')
local attempt = tonumber(v[3])
if outcome == 'ack' or outcome == 'ack!' then
  redis.call('HINCRBY', KEYS[7], 'done', 1)
  forget_unique(id, key)
  redis.call('PUBLISH', ARGV[11], 'completed ' .. attempt .. ' ' .. ARGV[12] .. ' ' .. id)
  if tonumber(ARGV[7]) == 0 then
    redis.call('DEL', key)
  else
    redis.call('HSET', key, 's', 'completed', 'f', now)
    redis.call('ZADD', KEYS[4], now, id)
    trim(KEYS[4], tonumber(ARGV[7]), tonumber(ARGV[8]))
  end
  return 'completed'
end
if outcome == 'release' then
  redis.call('HINCRBY', key, 'a', -1)
  make_waiting(id, key)
  signal()
  return 'released'
end
redis.call('HINCRBY', KEYS[7], 'failed', 1)
redis.call('HSET', key, 'e', ARGV[5])
if attempt >= tonumber(v[4]) then
  kill(id, key, tonumber(ARGV[9]), tonumber(ARGV[10]))
  redis.call('PUBLISH', ARGV[11], 'dead ' .. attempt .. ' ' .. ARGV[12] .. ' ' .. id)
  return 'dead'
end
-- The same backoff as Backoff::delay_ms in Rust.
local delay = tonumber(v[6])
if v[5] == '1' then
  local full = math.min(tonumber(v[7]), delay * 2 ^ math.min(attempt - 1, 40))
  local half = math.floor(full / 2)
  delay = half + math.floor(half * tonumber(ARGV[6]))
end
redis.call('HSET', key, 's', 'delayed', 'r', now + delay)
redis.call('ZADD', KEYS[2], now + delay, id)
redis.call('PUBLISH', ARGV[11], 'failed ' .. attempt .. ' ' .. ARGV[12] .. ' ' .. id)
return 'retrying'
