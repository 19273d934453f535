-- Sliding window counter. KEYS[1]: hash {i = window index, c = current, p = previous}.
-- ARGV: limit, period_us, burst (unused), cost.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local limit, period, cost = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[4])
local index = math.floor(now / period)
local state = redis.call('HMGET', KEYS[1], 'i', 'c', 'p')
local i, current, previous = tonumber(state[1]), tonumber(state[2]) or 0, tonumber(state[3]) or 0
if i == nil then
  current, previous = 0, 0
elseif i + 1 == index then
  current, previous = 0, current
elseif i ~= index then
  current, previous = 0, 0
end
local elapsed = now - index * period
local weighted = math.ceil(previous * (period - elapsed) / period)
local used = weighted + current
local reset = period - elapsed
if current > 0 then reset = 2 * period - elapsed end
if used + cost <= limit then
  current = current + cost
  redis.call('HSET', KEYS[1], 'i', index, 'c', current, 'p', previous)
  redis.call('PEXPIRE', KEYS[1], math.ceil(2 * period / 1000) + 1)
  return {1, limit - used - cost, reset, 0}
end
local retry
if current + cost <= limit and previous > 0 then
  local keep = math.floor((limit - current - cost) * period / previous)
  retry = math.max(period - elapsed - keep, 1)
else
  local keep = period
  if current > 0 then keep = math.min(math.floor((limit - cost) * period / current), period) end
  retry = (period - elapsed) + (period - keep)
end
return {0, math.max(limit - used, 0), reset, retry}
