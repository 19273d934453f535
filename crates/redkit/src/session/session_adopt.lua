-- Rotation's second half: writes session KEYS[1] (a new id) from the old session's full
-- field list (meta, data and stamps, as HGETALL gave them), touched now.
-- ARGV: the field/value list. Returns 1, or 0 if the id is taken.
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV))
redis.call('HSET', KEYS[1], '_l', now)
local meta = meta_of(ARGV)
redis.call('PEXPIRE', KEYS[1], ttl_ms(meta, now))
return 1
