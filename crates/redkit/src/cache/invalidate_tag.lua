-- KEYS[1]: the tag's set of keys. ARGV[1]: key prefix of the namespace,
-- ARGV[2]: backplane channel, ARGV[3]: backplane message.
-- Unlinks every key filed under the tag, then the tag itself; returns how many keys existed.
-- The keys share KEYS[1]'s hash tag, so they live in its slot on a cluster.
local members = redis.call('SMEMBERS', KEYS[1])
local removed = 0
for i = 1, #members, 500 do
  local batch = {}
  for j = i, math.min(i + 499, #members) do
    batch[#batch + 1] = ARGV[1] .. members[j]
  end
  removed = removed + redis.call('UNLINK', unpack(batch))
end
redis.call('UNLINK', KEYS[1])
redis.call('PUBLISH', ARGV[2], ARGV[3])
return removed
