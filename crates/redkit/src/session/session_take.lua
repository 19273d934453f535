-- Deletes live session KEYS[1] (logout, and rotation's first half) and leaves tombstone
-- KEYS[2] until the session's absolute deadline, so nothing can bring it back.
-- ARGV[1]: backplane channel, ARGV[2]: this instance's id, ARGV[3]: the session id.
-- Returns {stamp, fields...} of the session as it was, or false if absent or expired.
local all = redis.call('HGETALL', KEYS[1])
if #all == 0 then return false end
redis.call('DEL', KEYS[1])
local meta = meta_of(all)
if expired(meta) then return false end
local ts = stamp(meta)
redis.call('SET', KEYS[2], string.format('%.0f', ts), 'PXAT', math.max(meta['_a'], now + 1))
announce(ARGV[1], ARGV[2], 'd', ts, ARGV[3])
local out = {string.format('%.0f', ts)}
for i = 1, #all do out[#out + 1] = all[i] end
return out
