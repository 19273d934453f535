-- One step of a tag invalidation. KEYS[1]: the tag (sorted set of bare keys).
-- ARGV[1]: key prefix of the namespace, ARGV[2]: most keys this step.
-- Unlinks up to ARGV[2] keys filed under the tag and takes them out of it (deleting the
-- tag when it is empty); returns {keys that existed, members left}. Bounded per call, so
-- a huge tag never blocks Redis: the caller repeats until nothing is left.
-- The keys share KEYS[1]'s hash tag, so they live in its slot on a cluster.
local members = redis.call('ZRANGE', KEYS[1], 0, tonumber(ARGV[2]) - 1)
local removed = 0
if #members > 0 then
  local full = {}
  for j = 1, #members do full[j] = ARGV[1] .. members[j] end
  removed = redis.call('UNLINK', unpack(full))
  redis.call('ZREM', KEYS[1], unpack(members))
end
local left = redis.call('ZCARD', KEYS[1])
if left == 0 then redis.call('UNLINK', KEYS[1]) end
return {removed, left}
