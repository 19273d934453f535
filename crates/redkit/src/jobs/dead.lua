-- ARGV[2]: 'retry' (back to waiting, attempts reset) or 'purge' (delete); ARGV[3]: one id,
-- or '' for every dead job (at most 10000 per call). Returns how many were moved.
local ids
if ARGV[3] ~= '' then
  ids = {}
  if redis.call('ZSCORE', KEYS[5], ARGV[3]) then ids = {ARGV[3]} end
else
  ids = redis.call('ZRANGE', KEYS[5], 0, 9999)
end
for _, id in ipairs(ids) do
  local key = prefix .. id
  redis.call('ZREM', KEYS[5], id)
  if ARGV[2] == 'purge' then
    redis.call('DEL', key)
  else
    local u = redis.call('HGET', key, 'u')
    if u and u ~= '' and redis.call('HSETNX', KEYS[6], u, id) == 0 then
      redis.call('HSET', key, 'u', '')
    end
    redis.call('HSET', key, 'a', 0)
    redis.call('HDEL', key, 'f', 'w')
    make_waiting(id, key)
  end
end
if ARGV[2] ~= 'purge' and #ids > 0 then signal() end
return #ids
