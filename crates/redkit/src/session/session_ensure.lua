-- Makes sure session KEYS[1] is in Redis as the outage left it: sessions created or
-- rotated during an outage, and the idle timers of sessions used during it.
-- ARGV[1]: user ('' for none), ARGV[2]: created ms, ARGV[3]: last seen ms, ARGV[4]: idle
-- ms, ARGV[5]: absolute deadline ms, ARGV[6]: stamp of its last change (µs), ARGV[7]: n
-- data fields, then n name ('d:NAME'), value, stamp triples, then removed-field name and
-- stamp pairs.
-- - tombstone KEYS[2] present: rotated meanwhile, returns {2, the new id} (the caller
--   follows it); deleted, returns 0;
-- - the session exists: its idle timer moves to the later of the two, and each field the
--   outage wrote later than Redis did is taken; returns 1 (the caller checks the revoke
--   marker too: an earlier attempt may have been cut off before it did);
-- - it is missing (created in the outage, or idle-expired in Redis while it was used
--   during the outage): written from the snapshot unless past its deadlines, returns 2
--   (the caller then checks the user's revoke marker); 0 if past them.
local _, moved = tombstone_of(redis.call('GET', KEYS[2]))
if moved then return {2, moved} end
if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
local all = redis.call('HGETALL', KEYS[1])
local last, n = tonumber(ARGV[3]), tonumber(ARGV[7])
if #all > 0 then
  local meta = meta_of(all)
  if expired(meta) then
    redis.call('DEL', KEYS[1])
    return 0
  end
  local stamps = {}
  for i = 1, #all, 2 do
    if string.sub(all[i], 1, 2) == 't:' then stamps[string.sub(all[i], 3)] = tonumber(all[i + 1]) end
  end
  local i = 8
  for _ = 1, n do
    local field = string.sub(ARGV[i], 3)
    if (stamps[field] or 0) < tonumber(ARGV[i + 2]) then
      redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1], 't:' .. field, ARGV[i + 2])
    end
    i = i + 3
  end
  while i < #ARGV do
    local field = string.sub(ARGV[i], 3)
    if (stamps[field] or 0) < tonumber(ARGV[i + 1]) then
      redis.call('HDEL', KEYS[1], ARGV[i])
      redis.call('HSET', KEYS[1], 't:' .. field, ARGV[i + 1])
    end
    i = i + 2
  end
  if tonumber(ARGV[6]) > meta['_t'] then redis.call('HSET', KEYS[1], '_t', ARGV[6]) end
  if last > meta['_l'] then
    redis.call('HSET', KEYS[1], '_l', last)
    redis.call('PEXPIRE', KEYS[1], ttl_ms(meta, last))
  end
  return 1
end
local idle, abs = tonumber(ARGV[4]), tonumber(ARGV[5])
if now >= abs or now >= last + idle then return 0 end
redis.call('HSET', KEYS[1], '_u', ARGV[1], '_c', ARGV[2], '_l', last, '_i', idle, '_a', abs, '_t', ARGV[6])
write_stamped(KEYS[1], ARGV, 8, n, #ARGV + 1)
redis.call('PEXPIRE', KEYS[1], math.max(1, math.min(last + idle, abs) - now))
return 2
