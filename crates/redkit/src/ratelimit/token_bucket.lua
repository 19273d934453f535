-- Token bucket. KEYS[1]: hash {m = micro-tokens, at = µs}. ARGV: limit, period_us, burst, cost.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local limit, period, burst, cost = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local M = 1000000
local capacity = burst * M
local state = redis.call('HMGET', KEYS[1], 'm', 'at')
local tokens, at = tonumber(state[1]), tonumber(state[2])
if not tokens then tokens, at = capacity, now end
if at > now then at = now end
tokens = math.min(capacity, tokens + math.floor((now - at) * limit * M / period))
local need = cost * M
local function time_for(n) return math.ceil(n * period / (limit * M)) end
local allowed, retry = 0, 0
if tokens >= need then
  tokens = tokens - need
  allowed = 1
else
  retry = time_for(need - tokens)
end
local reset = time_for(capacity - tokens)
redis.call('HSET', KEYS[1], 'm', string.format('%.0f', tokens), 'at', string.format('%.0f', now))
redis.call('PEXPIRE', KEYS[1], math.ceil(reset / 1000) + 1)
return {allowed, math.floor(tokens / M), reset, retry}
