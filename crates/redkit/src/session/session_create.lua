-- Creates session KEYS[1] unless the id is taken or was deleted (tombstone KEYS[2]).
-- ARGV[1]: idle ms, ARGV[2]: absolute TTL ms, ARGV[3]: user ('' for none), then data
-- field/value pairs ('d:NAME', JSON). Times from Redis TIME; every data field is stamped
-- ('t:NAME'); `_cu` is the creation's stamp (µs), which revoke-all compares with. Returns
-- {created_ms, stamp} or false.
if redis.call('EXISTS', KEYS[1]) == 1 or redis.call('EXISTS', KEYS[2]) == 1 then return false end
local idle, abs = tonumber(ARGV[1]), now + tonumber(ARGV[2])
local ts = now_us
redis.call('HSET', KEYS[1], '_u', ARGV[3], '_c', now, '_l', now, '_i', idle, '_a', abs, '_t', string.format('%.0f', ts),
  '_cu', string.format('%.0f', ts))
for i = 4, #ARGV, 2 do
  redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1], 't:' .. string.sub(ARGV[i], 3), string.format('%.0f', ts))
end
redis.call('PEXPIRE', KEYS[1], math.min(idle, abs - now))
return {now, string.format('%.0f', ts)}
