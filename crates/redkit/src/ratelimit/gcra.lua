-- GCRA. KEYS[1]: the key's theoretical arrival time (µs). ARGV: limit, period_us, burst, cost.
-- Returns {allowed, remaining, reset_after_us, retry_after_us}; the clock is Redis's.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local limit, period, burst, cost = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local interval = math.max(math.floor(period / limit), 1)
local tolerance = interval * burst
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local new_tat = tat + interval * cost
if new_tat - now <= tolerance then
  redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX', math.ceil((new_tat - now) / 1000) + 1)
  return {1, math.floor((tolerance - (new_tat - now)) / interval), new_tat - now, 0}
end
return {0, math.floor((tolerance - math.min(tat - now, tolerance)) / interval), tat - now, new_tat - now - tolerance}
