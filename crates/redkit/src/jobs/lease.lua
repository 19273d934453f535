-- Promotes due delayed jobs, returns expired leases to waiting (dead when out of
-- attempts, kept per dead_count and dead_age ms), then leases up to `max` jobs to `worker`
-- for `lease_ms`, their tokens `token_prefix` and a number. Returns {status (1, or -1
-- paused), next delayed run-at or -1, then 9 fields per job: id, token, payload, attempt,
-- max attempts, priority, timeout, created, progress or ''}. `reap_every`: 0 looks for
-- expired leases on this call; otherwise at most once per that many ms for the queue.
local function lease_jobs(worker, lease_ms, max, token_prefix, dead_count, dead_age, reap_every)
  local meta = redis.call('HMGET', KEYS[7], 'paused', 'reaped', 'nd')
  local next_due = tonumber(meta[3])
  if meta[1] == '1' then return {-1, -1} end
  -- Delayed jobs are looked for only once one may be due (see `nd` in the prelude): on a
  -- queue with none, a lease pays no command for them.
  if next_due == nil or next_due <= now then
    local due = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, 1000)
    for _, id in ipairs(due) do
      redis.call('ZREM', KEYS[2], id)
      make_waiting(id, prefix .. id)
    end
    local first = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
    next_due = tonumber(first[2]) or NO_DELAYED_JOB
    redis.call('HSET', KEYS[7], 'nd', next_due)
  end
  -- An ack's lease (settle_fetch.lua) looks for expired leases at most every
  -- `reap_every` ms per queue, not once per job: each command a script calls costs Redis
  -- a few µs, and a lease runs for seconds, so finding it expired a little later changes
  -- nothing. A plain fetch (an idle worker, or a caller of the API) always looks.
  local expired = {}
  if reap_every == 0 or now - (tonumber(meta[2]) or 0) >= reap_every then
    if reap_every > 0 then redis.call('HSET', KEYS[7], 'reaped', now) end
    expired = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now, 'LIMIT', 0, 100)
  end
  for _, id in ipairs(expired) do
    local key = prefix .. id
    redis.call('ZREM', KEYS[3], id)
    redis.call('HDEL', key, 't', 'l')
    redis.call('HINCRBY', KEYS[7], 'expired', 1)
    redis.call('HINCRBY', KEYS[7], 'failed', 1)
    local v = redis.call('HMGET', key, 'a', 'ma')
    redis.call('HSET', key, 'e', 'lease expired (worker died or stalled)')
    if tonumber(v[1]) >= tonumber(v[2]) then
      kill(id, key, dead_count, dead_age)
    else
      make_waiting(id, key)
    end
  end
  local popped = redis.call('ZPOPMIN', KEYS[1], max)
  local out = {1, -1}
  for i = 1, #popped, 2 do
    local id = popped[i]
    local key = prefix .. id
    local token = token_prefix .. ((i + 1) / 2)
    local v = redis.call('HMGET', key, 'p', 'ma', 'pr', 'to', 'c', 'pg', 'a')
    local attempt = (tonumber(v[7]) or 0) + 1
    local until_ms = now + lease_ms
    redis.call('HSET', key, 'a', attempt, 's', 'active', 't', token, 'w', worker, 'l', until_ms, 'r', now)
    redis.call('ZADD', KEYS[3], until_ms, id)
    for _, x in ipairs({id, token, v[1], attempt, v[2], v[3], v[4], v[5], v[6] or ''}) do
      table.insert(out, x)
    end
  end
  -- `nd` may be early (a delayed job cancelled or promoted since): a worker that wakes for
  -- it finds nothing and the lease looks again.
  if #popped == 0 and next_due < NO_DELAYED_JOB then out[2] = next_due end
  return out
end
