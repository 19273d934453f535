-- Deletes live session KEYS[1] (logout, or rotation's first half) and leaves tombstone
-- KEYS[2] until the session's absolute deadline, so nothing can bring it back; a
-- rotation's tombstone names the new id, so operations on the old one replayed later
-- follow it. ARGV[1]: backplane channel, ARGV[2]: this instance's id, ARGV[3]: the
-- session id, ARGV[4]: the id it moves to ('' for a logout).
-- Returns {stamp, fields...} of the session as it was, or false if absent or expired.
local all = redis.call('HGETALL', KEYS[1])
if #all == 0 then return false end
redis.call('DEL', KEYS[1])
local meta = meta_of(all)
if expired(meta) then return false end
local ts = stamp(meta)
local value = string.format('%.0f', ts)
if ARGV[4] ~= '' then value = value .. '>' .. ARGV[4] end
redis.call('SET', KEYS[2], value, 'PXAT', math.max(meta['_a'], now + 1))
announce(ARGV[1], ARGV[2], 'd', ts, ARGV[3])
local out = {string.format('%.0f', ts)}
for i = 1, #all do out[#out + 1] = all[i] end
return out
