-- Replays a field patch made during an outage onto session KEYS[1] as Redis has it now.
-- ARGV[1]: the patch's stamp (µs), ARGV[2]: n fields set, then n name/value pairs
-- ('d:NAME', JSON), then names removed, then the backplane channel, this instance's id
-- and the session id (the last three). A field is changed only if its own stamp is older
-- than the patch: a newer write through Redis wins. A session that was deleted, revoked
-- or expired stays gone; one that was rotated (tombstone KEYS[2] names the new id) is
-- followed. Returns 1 if applied to the session, {2, new id} to follow, 0 if it is gone.
local all = redis.call('HGETALL', KEYS[1])
if #all == 0 then
  local _, moved = tombstone_of(redis.call('GET', KEYS[2]))
  if moved then return {2, moved} end
  return 0
end
local meta = meta_of(all)
if expired(meta) then return 0 end
local ts = tonumber(ARGV[1])
local stamps = {}
for i = 1, #all, 2 do
  if string.sub(all[i], 1, 2) == 't:' then stamps[string.sub(all[i], 3)] = tonumber(all[i + 1]) end
end
local function newer(name) return (stamps[string.sub(name, 3)] or 0) < ts end
local n = tonumber(ARGV[2])
local text = string.format('%.0f', ts)
local changed = false
for i = 0, n - 1 do
  local name, value = ARGV[3 + 2 * i], ARGV[4 + 2 * i]
  if newer(name) then
    redis.call('HSET', KEYS[1], name, value, 't:' .. string.sub(name, 3), text)
    changed = true
  end
end
for i = 3 + 2 * n, #ARGV - 3 do
  if newer(ARGV[i]) then
    redis.call('HDEL', KEYS[1], ARGV[i])
    redis.call('HSET', KEYS[1], 't:' .. string.sub(ARGV[i], 3), text)
    changed = true
  end
end
if changed then
  if ts > meta['_t'] then redis.call('HSET', KEYS[1], '_t', text) end
  announce(ARGV[#ARGV - 2], ARGV[#ARGV - 1], 'c', math.max(ts, meta['_t']), ARGV[#ARGV])
end
return 1
