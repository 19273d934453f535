-- Reads session KEYS[1] as a flat field list, or false if absent or past a deadline.
-- ARGV[1] = '1' touches the idle timer. Meta fields: _u user, _c created, _l last seen,
-- _i idle ms, _a absolute deadline (ms); data fields are 'd:NAME' = JSON. Clock: Redis TIME.
local all = redis.call('HGETALL', KEYS[1])
if #all == 0 then return false end
local meta = meta_of(all)
if expired(meta) then
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
