-- Unlinks KEYS (in batches, to stay within Lua's stack) and announces it on the
-- backplane (ARGV[1]: channel, ARGV[2]: message). Returns how many keys existed.
local removed = 0
for i = 1, #KEYS, 500 do
  removed = removed + redis.call('UNLINK', unpack(KEYS, i, math.min(i + 499, #KEYS)))
end
redis.call('PUBLISH', ARGV[1], ARGV[2])
return removed
