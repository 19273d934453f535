-- Reads and deletes live session KEYS[1] in one step (rotation); false if absent or expired.
local all = redis.call('HGETALL', KEYS[1])
redis.call('DEL', KEYS[1])
if #all == 0 then return false end
if expired(meta_of(all)) then return false end
return all
