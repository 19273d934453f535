-- Writes records with their tags atomically and announces them on the backplane.
-- KEYS: the n record keys, then the tag keys of every record in order.
-- ARGV[1]: backplane channel, ARGV[2]: message, ARGV[3]: n,
-- then per record: value, physical TTL (ms), bare key (the tag member), tag count.
-- A tag is a sorted set of keys by when they expire (Redis's clock): each write prunes the
-- members whose time has passed, so a tag holds at most the keys still alive (or deleted
-- before their time), and it expires with its longest-lived member.
-- Every key shares the namespace's hash tag, so all of this is one slot on a cluster.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local n = tonumber(ARGV[3])
local a = 4
local k = n + 1
for i = 1, n do
  local value, ttl, bare, tags = ARGV[a], ARGV[a + 1], ARGV[a + 2], tonumber(ARGV[a + 3])
  a = a + 4
  redis.call('SET', KEYS[i], value, 'PX', ttl)
  local until_ms = now + tonumber(ttl)
  for _ = 1, tags do
    redis.call('ZADD', KEYS[k], until_ms, bare)
    redis.call('ZREMRANGEBYSCORE', KEYS[k], '-inf', now)
    redis.call('PEXPIREAT', KEYS[k], until_ms, 'NX')
    redis.call('PEXPIREAT', KEYS[k], until_ms, 'GT')
    k = k + 1
  end
end
redis.call('PUBLISH', ARGV[1], ARGV[2])
return n
