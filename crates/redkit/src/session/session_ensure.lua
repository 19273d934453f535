-- Makes sure session KEYS[1] is in Redis as the outage left it: the replay of a session
-- created during an outage, and of the idle timers of sessions used during it.
-- ARGV[1]: stamp (µs), ARGV[2]: user ('' for none), ARGV[3]: created ms, ARGV[4]: last
-- seen ms, ARGV[5]: idle ms, ARGV[6]: absolute deadline ms, then data field/value pairs.
-- - tombstone KEYS[2] present (deleted): nothing, returns 0;
-- - the session exists: its idle timer moves to the later of the two, returns 1;
-- - it is missing (created in the outage, or idle-expired in Redis while it was used
--   during the outage): written from the snapshot unless past its deadlines, returns 2
--   (the caller then checks the user's revoke marker); 0 if past them.
if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
local all = redis.call('HGETALL', KEYS[1])
local last = tonumber(ARGV[4])
if #all > 0 then
  local meta = meta_of(all)
  if expired(meta) then
    redis.call('DEL', KEYS[1])
    return 0
  end
  if last > meta['_l'] then
    redis.call('HSET', KEYS[1], '_l', last)
    redis.call('PEXPIRE', KEYS[1], ttl_ms(meta, last))
  end
  return 1
end
local idle, abs = tonumber(ARGV[5]), tonumber(ARGV[6])
if now >= abs or now >= last + idle then return 0 end
local ts = ARGV[1]
redis.call('HSET', KEYS[1], '_u', ARGV[2], '_c', ARGV[3], '_l', last, '_i', idle, '_a', abs, '_t', ts)
for i = 7, #ARGV, 2 do
  redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1], 't:' .. string.sub(ARGV[i], 3), ts)
end
redis.call('PEXPIRE', KEYS[1], math.max(1, math.min(last + idle, abs) - now))
return 2
