-- Extends the lease of job ARGV[2] held by token ARGV[3] to now + ARGV[4] ms and, when
-- ARGV[5] is '1', stores progress ARGV[6]. Returns 1, or 0 when the lease is lost.
local key = prefix .. ARGV[2]
local v = redis.call('HMGET', key, 's', 't')
if v[1] ~= 'active' or v[2] ~= ARGV[3] then return 0 end
local until_ms = now + tonumber(ARGV[4])
redis.call('HSET', key, 'l', until_ms)
redis.call('ZADD', KEYS[3], until_ms, ARGV[2])
if ARGV[5] == '1' then redis.call('HSET', key, 'pg', ARGV[6]) end
return 1
