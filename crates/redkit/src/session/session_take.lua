-- Reads and deletes live session KEYS[1] in one step (rotation); false if absent or expired.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local all = redis.call('HGETALL', KEYS[1])
redis.call('DEL', KEYS[1])
if #all == 0 then return false end
local meta = {}
for i = 1, #all, 2 do
  if string.sub(all[i], 1, 1) == '_' then meta[all[i]] = tonumber(all[i + 1]) end
end
if now >= meta['_a'] or now >= meta['_l'] + meta['_i'] then return false end
return all
