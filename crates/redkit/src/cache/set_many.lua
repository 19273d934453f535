-- Writes records with their tags atomically and announces them on the backplane.
-- KEYS: the n record keys, then the tag-set keys of every record in order.
-- ARGV[1]: backplane channel, ARGV[2]: message, ARGV[3]: n,
-- then per record: value, physical TTL (ms), bare key (the tag-set member), tag count.
-- Every key shares the namespace's hash tag, so all of this is one slot on a cluster.
local n = tonumber(ARGV[3])
local a = 4
local t = n + 1
for i = 1, n do
  local value, ttl, bare, tags = ARGV[a], ARGV[a + 1], ARGV[a + 2], tonumber(ARGV[a + 3])
  a = a + 4
  redis.call('SET', KEYS[i], value, 'PX', ttl)
  for _ = 1, tags do
    -- A tag set lives as long as its longest-lived member.
    redis.call('SADD', KEYS[t], bare)
    redis.call('PEXPIRE', KEYS[t], ttl, 'NX')
    redis.call('PEXPIRE', KEYS[t], ttl, 'GT')
    t = t + 1
  end
end
redis.call('PUBLISH', ARGV[1], ARGV[2])
return n
