-- Ends attempt `token` of job `id` with `outcome`: 'ack', 'fail', 'release', or 'ack!' (an
-- ack made while Redis was away: completes the job whatever its lease, unless it is
-- finished already). `err`: the failure, `jitter` in [0, 1) for the backoff, then the
-- retention (completed count, completed age ms, dead count, dead age ms), the events
-- channel and the settling instance (so it can skip its own announcements).
-- Returns completed | retrying | dead | released | lost.
local function settle_job(id, token, outcome, err, jitter, keep_completed, keep_completed_age,
                          dead_count, dead_age, channel, instance)
  local key = prefix .. id
  local v = redis.call('HMGET', key, 's', 't', 'a', 'ma', 'bk', 'bd', 'bm', 'u')
  if not v[1] then return 'lost' end
  if outcome == 'ack!' then
    if v[1] == 'completed' or v[1] == 'dead' then return 'lost' end
  elseif v[1] ~= 'active' or v[2] ~= token then
    return 'lost'
  end
  if v[1] == 'active' then
    redis.call('ZREM', KEYS[3], id)
  else
    for i = 1, 3 do redis.call('ZREM', KEYS[i], id) end
  end
  local attempt = tonumber(v[3])
  if outcome == 'ack' or outcome == 'ack!' then
    -- The token and lease end stay on a completed job (one command fewer per job): every
    -- reader of `t` and `l` checks for state 'active' first, and a job leaves
    -- 'completed' only by being deleted.
    local done = redis.call('HINCRBY', KEYS[7], 'done', 1)
    forget_unique(id, key, v[8])
    redis.call('PUBLISH', channel, 'completed ' .. attempt .. ' ' .. instance .. ' ' .. id)
    if keep_completed == 0 then
      redis.call('DEL', key)
    else
      redis.call('HSET', key, 's', 'completed', 'f', now)
      redis.call('ZADD', KEYS[4], now, id)
      -- Every 64th completion, as on SQLite: up to 64 more are kept between trims, and
      -- a trim's commands are not paid per job.
      if done % 64 == 0 then trim(KEYS[4], keep_completed, keep_completed_age) end
    end
    return 'completed'
  end
  redis.call('HDEL', key, 't', 'l')
  if outcome == 'release' then
    redis.call('HINCRBY', key, 'a', -1)
    make_waiting(id, key)
    signal()
    return 'released'
  end
  redis.call('HINCRBY', KEYS[7], 'failed', 1)
  redis.call('HSET', key, 'e', err)
  if attempt >= tonumber(v[4]) then
    kill(id, key, dead_count, dead_age)
    redis.call('PUBLISH', channel, 'dead ' .. attempt .. ' ' .. instance .. ' ' .. id)
    return 'dead'
  end
  local wait = tonumber(v[6])
  if v[5] == '1' then
    local full = math.min(tonumber(v[7]), wait * 2 ^ math.min(attempt - 1, 40))
    local half = math.floor(full / 2)
    wait = half + math.floor(half * jitter)
  end
  redis.call('HSET', key, 's', 'delayed', 'r', now + wait)
  delay(id, now + wait)
  redis.call('PUBLISH', channel, 'failed ' .. attempt .. ' ' .. instance .. ' ' .. id)
  return 'retrying'
end
