-- Adds jobs in order, skipping duplicates (same id stored, or same unique key pending).
-- ARGV[2]: schedule name or '', ARGV[3]: its tick (the batch is added only once per tick
-- and never for a tick at or before the last one fired), ARGV[4..]: 13 fields per job:
-- id, payload, priority, max attempts, backoff kind, base, max, timeout, unique key or '',
-- delay ms, run-at ms (0: now + delay), attempts made, created ms (0: now).
-- Returns {id, created (1/0), ...}.
if ARGV[2] ~= '' then
  local field = 'sched:' .. ARGV[2]
  local last = tonumber(redis.call('HGET', KEYS[7], field) or '-1')
  if last >= tonumber(ARGV[3]) then return {} end
  redis.call('HSET', KEYS[7], field, ARGV[3])
end
local out, ready = {}, false
for n = 4, #ARGV - 12, 13 do
  local id, uk = ARGV[n], ARGV[n + 8]
  local key = prefix .. id
  local existing = nil
  if redis.call('EXISTS', key) == 1 then
    existing = id
  elseif uk ~= '' then
    existing = redis.call('HGET', KEYS[6], uk)
  end
  if existing then
    table.insert(out, existing)
    table.insert(out, 0)
  else
    local seq = redis.call('HINCRBY', KEYS[7], 'seq', 1)
    local run = tonumber(ARGV[n + 10])
    if run == 0 then run = now + tonumber(ARGV[n + 9]) end
    local created = tonumber(ARGV[n + 12])
    if created == 0 then created = now end
    -- One HSET with the state, and the ready score from what is at hand (what
    -- make_waiting would read back): every command a script calls costs Redis a few µs.
    local delayed = run > now
    redis.call('HSET', key, 'p', ARGV[n + 1], 'pr', ARGV[n + 2], 'ma', ARGV[n + 3], 'bk', ARGV[n + 4],
      'bd', ARGV[n + 5], 'bm', ARGV[n + 6], 'to', ARGV[n + 7], 'u', uk, 'a', ARGV[n + 11],
      'c', created, 'r', run, 'q', seq, 's', delayed and 'delayed' or 'waiting')
    if uk ~= '' then redis.call('HSET', KEYS[6], uk, id) end
    if delayed then
      delay(id, run)
    else
      redis.call('ZADD', KEYS[1], ready_score(ARGV[n + 2], seq), id)
      ready = true
    end
    table.insert(out, id)
    table.insert(out, 1)
  end
end
if ready then signal() end
return out
