-- Creates session KEYS[1] unless the id is taken. ARGV[1]: idle ms, ARGV[2]: absolute TTL
-- ms, ARGV[3]: user ('' for none), then data field/value pairs. Times from Redis TIME.
-- Returns {created_ms} or false if the id exists.
if redis.call('EXISTS', KEYS[1]) == 1 then return false end
local idle, abs = tonumber(ARGV[1]), now + tonumber(ARGV[2])
redis.call('HSET', KEYS[1], '_u', ARGV[3], '_c', now, '_l', now, '_i', idle, '_a', abs)
for i = 4, #ARGV, 2 do
  redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
end
redis.call('PEXPIRE', KEYS[1], math.min(idle, abs - now))
return {now}
