-- Releases token ARGV[1]'s permit (compare-and-delete: only the holder's token releases).
-- KEYS[1]: holders. Returns 1 if it held a live lease, else 0.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
return redis.call('ZREM', KEYS[1], ARGV[1])
