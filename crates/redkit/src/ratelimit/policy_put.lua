-- Stores a shared rate-limit policy change unless a newer one is there.
-- KEYS[1]: the definitions hash, KEYS[2]: the version counter.
-- ARGV[1]: policy name, ARGV[2]: the change as JSON {"stamp":…,"policy":…|null},
-- ARGV[3]: its stamp, ARGV[4]: backplane channel, ARGV[5]: the message.
-- Returns 1 if stored (and announced), 0 if a newer change was there.
local held = redis.call('HGET', KEYS[1], ARGV[1])
if held then
  local ok, old = pcall(cjson.decode, held)
  if ok and type(old) == 'table' and tonumber(old['stamp']) and tonumber(old['stamp']) >= tonumber(ARGV[3]) then
    return 0
  end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('INCR', KEYS[2])
redis.call('PUBLISH', ARGV[4], ARGV[5])
return 1
