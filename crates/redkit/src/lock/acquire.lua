-- Takes one of ARGV[2] permits of a lock or semaphore for token ARGV[1], leased for ARGV[3] ms.
-- KEYS[1]: holders (sorted set: token -> lease expiry, ms), KEYS[2]: fence counter.
-- ARGV[4]: the fence must be above this (raised after a host-local outage).
-- Returns {1, fence, lease_ms} or {0, ms until the soonest lease ends}. Clock: Redis TIME.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local permits, lease = tonumber(ARGV[2]), tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= permits then
  local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  return {0, tonumber(first[2]) - now}
end
local floor = tonumber(ARGV[4])
if (tonumber(redis.call('GET', KEYS[2])) or 0) < floor then
  redis.call('SET', KEYS[2], floor)
end
local fence = redis.call('INCR', KEYS[2])
redis.call('ZADD', KEYS[1], now + lease, ARGV[1])
local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
redis.call('PEXPIREAT', KEYS[1], tonumber(last[2]))
return {1, fence, lease}
