-- Fixed window. KEYS[1]: hash {i = window index, n = count}. ARGV: limit, period_us, burst (unused), cost.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local limit, period, cost = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[4])
local index = math.floor(now / period)
local state = redis.call('HMGET', KEYS[1], 'i', 'n')
local count = 0
if tonumber(state[1]) == index then count = tonumber(state[2]) end
local window_end = (index + 1) * period - now
if count + cost <= limit then
  count = count + cost
  redis.call('HSET', KEYS[1], 'i', index, 'n', count)
  redis.call('PEXPIRE', KEYS[1], math.ceil(window_end / 1000) + 1)
  return {1, limit - count, window_end, 0}
end
return {0, limit - math.min(count, limit), window_end, window_end}
