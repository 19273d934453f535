-- Reads session KEYS[1] as a flat field list, or false if absent or past a deadline.
-- ARGV[1] = '1' touches the idle timer. Meta fields: see the prelude; data fields are
-- 'd:NAME' = JSON, their stamps 't:NAME'. Clock: Redis TIME.
local all = redis.call('HGETALL', KEYS[1])
if #all == 0 then return false end
local meta = meta_of(all)
if expired(meta) then
  redis.call('DEL', KEYS[1])
  return false
end
if ARGV[1] == '1' then
  redis.call('HSET', KEYS[1], '_l', now)
  redis.call('PEXPIRE', KEYS[1], ttl_ms(meta, now))
  for i = 1, #all, 2 do
    if all[i] == '_l' then all[i + 1] = tostring(now) end
  end
end
return all
