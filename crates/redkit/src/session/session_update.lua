-- Merges fields into live session KEYS[1] and touches it; concurrent updates of different
-- fields never lose each other. ARGV[1]: max bytes, ARGV[2]: n fields to set,
-- then n name/value pairs, then names to remove.
-- Returns {1, fields...} when applied, {0} when absent or expired, {2, bytes} when too large.
local all = redis.call('HGETALL', KEYS[1])
if #all == 0 then return {0} end
local meta = meta_of(all)
if expired(meta) then
  redis.call('DEL', KEYS[1])
  return {0}
end
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
for i = 3 + 2 * n, #ARGV do
  touched[ARGV[i]] = true
  removes[#removes + 1] = ARGV[i]
end
local total = 0
for i = 1, #all, 2 do
  if not touched[all[i]] then total = total + #all[i] + #all[i + 1] end
end
for i = 1, #sets, 2 do total = total + #sets[i] + #sets[i + 1] end
if total > tonumber(ARGV[1]) then return {2, total} end
if #sets > 0 then redis.call('HSET', KEYS[1], unpack(sets)) end
if #removes > 0 then redis.call('HDEL', KEYS[1], unpack(removes)) end
redis.call('HSET', KEYS[1], '_l', now)
redis.call('PEXPIRE', KEYS[1], math.min(meta['_i'], meta['_a'] - now))
local out = {1}
local after = redis.call('HGETALL', KEYS[1])
for i = 1, #after do out[#out + 1] = after[i] end
return out
