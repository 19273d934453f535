-- Deletes live session KEYS[1] (logout, or rotation's first half) and leaves tombstone
-- KEYS[2] until the session's absolute deadline, so nothing can bring it back; a
-- rotation's tombstone names the new id, so operations on the old one replayed later
-- follow it. ARGV[1]: backplane channel, ARGV[2]: this instance's id, ARGV[3]: the
-- session id, ARGV[4]: the id it moves to ('' for a logout), ARGV[5]: how long (ms) a
-- logout's tombstone is kept when the session is absent or expired here (another instance
-- may hold it from an outage and write it back when it recovers; 0: none).
-- Returns {stamp, fields...} of the session as it was, or false if absent or expired.
local all = redis.call('HGETALL', KEYS[1])
local meta = nil
if #all > 0 then
  redis.call('DEL', KEYS[1])
  meta = meta_of(all)
end
if meta == nil or expired(meta) then
  local keep = tonumber(ARGV[5])
  if ARGV[4] == '' and keep > 0 and redis.call('EXISTS', KEYS[2]) == 0 then
    redis.call('SET', KEYS[2], string.format('%.0f', now_us), 'PX', keep)
  end
  return false
end
local ts = stamp(meta)
local value = string.format('%.0f', ts)
if ARGV[4] ~= '' then value = value .. '>' .. ARGV[4] end
redis.call('SET', KEYS[2], value, 'PXAT', math.max(meta['_a'], now + 1))
announce(ARGV[1], ARGV[2], 'd', ts, ARGV[3])
local out = {string.format('%.0f', ts)}
for i = 1, #all do out[#out + 1] = all[i] end
return out
