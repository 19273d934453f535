-- Raises the fence counter KEYS[1] to at least ARGV[1] (after host-local grants in an outage).
if (tonumber(redis.call('GET', KEYS[1])) or 0) < tonumber(ARGV[1]) then
  redis.call('SET', KEYS[1], ARGV[1])
end
return 1
