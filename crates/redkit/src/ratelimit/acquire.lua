-- Concurrency limiter. KEYS[1]: sorted set of permit ids scored by lease expiry (µs).
-- ARGV: limit, lease_us, burst (unused), cost (unused), permit id.
-- Expired leases (holders that vanished) are reclaimed first.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local limit, lease = tonumber(ARGV[1]), tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local held = redis.call('ZCARD', KEYS[1])
local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
local soonest = lease
if first[2] then soonest = tonumber(first[2]) - now end
if held < limit then
  redis.call('ZADD', KEYS[1], now + lease, ARGV[5])
  redis.call('PEXPIRE', KEYS[1], math.ceil(lease / 1000) + 1)
  return {1, limit - held - 1, lease, 0}
end
return {0, 0, soonest, soonest}
