-- "Log out everywhere" for one user: raises the user's revoke marker KEYS[2] to the
-- stamp (every session of the user created before it is revoked, including ones created
-- concurrently or replayed later) and returns the ids in the user's index KEYS[1], which
-- the caller deletes one by one. ARGV[1]: stamp (µs; '0' for Redis's clock now),
-- ARGV[2]: how long the marker is kept (ms), ARGV[3]: channel, ARGV[4]: instance,
-- ARGV[5]: the user. Returns {stamp, ids...}.
local ts = tonumber(ARGV[1])
if ts == 0 then ts = now_us end
local old = tonumber(redis.call('GET', KEYS[2]) or '0')
ts = math.max(ts, old)
redis.call('SET', KEYS[2], string.format('%.0f', ts), 'PX', ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local out = {string.format('%.0f', ts)}
for _, id in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do out[#out + 1] = id end
announce(ARGV[3], ARGV[4], 'r', ts, ARGV[5])
return out
