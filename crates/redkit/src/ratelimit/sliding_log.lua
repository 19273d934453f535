-- Sliding log (exact). KEYS[1]: sorted set of admitted units scored by µs timestamp.
-- ARGV: limit, period_us, burst (unused), cost, unique id for this call's members.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local limit, period, cost = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[4])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - period)
local count = redis.call('ZCARD', KEYS[1])
if count + cost <= limit then
  for n = 1, cost do
    redis.call('ZADD', KEYS[1], now, ARGV[5] .. ':' .. n)
  end
  redis.call('PEXPIRE', KEYS[1], math.ceil(period / 1000) + 1)
  return {1, limit - count - cost, period, 0}
end
local must_expire = count + cost - limit
local oldest = redis.call('ZRANGE', KEYS[1], must_expire - 1, must_expire - 1, 'WITHSCORES')
local newest = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
return {0, math.max(limit - count, 0), tonumber(newest[2]) + period - now, tonumber(oldest[2]) + period - now}
