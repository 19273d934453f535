-- Reads session KEYS[1] as a flat field list, or false if absent or past a deadline.
-- ARGV[1] = '1' touches the idle timer. Meta fields: _u user, _c created, _l last seen,
-- _i idle ms, _a absolute deadline (ms); data fields are 'd:NAME' = JSON. Clock: Redis TIME.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local all = redis.call('HGETALL', KEYS[1])
if #all == 0 then return false end
local meta = {}
for i = 1, #all, 2 do
  if string.sub(all[i], 1, 1) == '_' then meta[all[i]] = tonumber(all[i + 1]) end
end
if now >= meta['_a'] or now >= meta['_l'] + meta['_i'] then
  redis.call('DEL', KEYS[1])
  return false
end
if ARGV[1] == '1' then
  redis.call('HSET', KEYS[1], '_l', now)
  redis.call('PEXPIRE', KEYS[1], math.min(meta['_i'], meta['_a'] - now))
  for i = 1, #all, 2 do
    if all[i] == '_l' then all[i + 1] = tostring(now) end
  end
end
return all
