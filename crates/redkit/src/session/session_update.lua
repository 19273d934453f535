-- Merges fields into live session KEYS[1] and touches it; concurrent updates of different
-- fields never lose each other. ARGV[1]: max bytes, ARGV[2]: n fields to set, then n
-- name/value pairs ('d:NAME', JSON), then names to remove, then the backplane channel,
-- this instance's id and the session id (the last three). Each field written or removed is stamped ('t:NAME'),
-- so an older operation replayed after an outage cannot overwrite it.
-- Returns {1, fields...} when applied, {0} when absent or expired, {2, bytes} when too large.
local all = redis.call('HGETALL', KEYS[1])
if #all == 0 then return {0} end
local meta = meta_of(all)
if expired(meta) then
  redis.call('DEL', KEYS[1])
  return {0}
end
local channel, instance, id = ARGV[#ARGV - 2], ARGV[#ARGV - 1], ARGV[#ARGV]
local n = tonumber(ARGV[2])
local touched = {}
local sets = {}
for i = 0, n - 1 do
  local name, value = ARGV[3 + 2 * i], ARGV[4 + 2 * i]
  touched[name] = true
  sets[#sets + 1] = name
  sets[#sets + 1] = value
end
local removes = {}
for i = 3 + 2 * n, #ARGV - 3 do
  touched[ARGV[i]] = true
  removes[#removes + 1] = ARGV[i]
end
local total = 0
for i = 1, #all, 2 do
  if string.sub(all[i], 1, 2) == 'd:' and not touched[all[i]] then total = total + #all[i] + #all[i + 1] end
end
for i = 1, #sets, 2 do total = total + #sets[i] + #sets[i + 1] end
if total > tonumber(ARGV[1]) then return {2, total} end
local ts = string.format('%.0f', stamp(meta))
for i = 1, #sets, 2 do
  redis.call('HSET', KEYS[1], sets[i], sets[i + 1], 't:' .. string.sub(sets[i], 3), ts)
end
for _, name in ipairs(removes) do
  redis.call('HDEL', KEYS[1], name)
  redis.call('HSET', KEYS[1], 't:' .. string.sub(name, 3), ts)
end
redis.call('HSET', KEYS[1], '_l', now, '_t', ts)
redis.call('PEXPIRE', KEYS[1], ttl_ms(meta, now))
announce(channel, instance, 'c', tonumber(ts), id)
local out = {1}
local after = redis.call('HGETALL', KEYS[1])
for i = 1, #after do out[#out + 1] = after[i] end
return out
