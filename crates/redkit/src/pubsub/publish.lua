-- Publishes to one channel. KEYS[1]: the stream (entry ids 0-OFFSET, fields d = data,
-- t = ms), KEYS[2]: the meta hash (epoch, offset), KEYS[3]: the idempotency record.
-- ARGV[1]: data (JSON text), ARGV[2]: '1' when KEYS[3] is a real idempotency key,
-- ARGV[3]: history size, ARGV[4]: history TTL ms (0: none), ARGV[5]: dedupe window ms,
-- ARGV[6]: an epoch to use if the channel has none, ARGV[7]: meta TTL ms,
-- ARGV[8]: backplane channel, ARGV[9]: header of the announcement (JSON, without "e"/"o").
-- Returns {epoch, offset, duplicate (0/1)}. Every key shares the channel's hash tag.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if ARGV[2] == '1' then
  local prev = redis.call('GET', KEYS[3])
  if prev then
    local sep = string.find(prev, ':', 1, true)
    return {string.sub(prev, 1, sep - 1), tonumber(string.sub(prev, sep + 1)), 1}
  end
end
local epoch = redis.call('HGET', KEYS[2], 'epoch')
if not epoch then
  epoch = ARGV[6]
  redis.call('HSET', KEYS[2], 'epoch', epoch, 'offset', 0)
  redis.call('DEL', KEYS[1])
end
local offset = redis.call('HINCRBY', KEYS[2], 'offset', 1)
redis.call('PEXPIRE', KEYS[2], ARGV[7])
local size, ttl = tonumber(ARGV[3]), tonumber(ARGV[4])
if size > 0 then
  redis.call('XADD', KEYS[1], 'MAXLEN', size, '0-' .. offset, 'd', ARGV[1], 't', now)
  if ttl > 0 then
    -- Age: drop what is too old from the head, a bounded number per publish.
    local head = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', 100)
    local keep = nil
    for _, e in ipairs(head) do
      local at = tonumber(e[2][4])
      if at and at >= now - ttl then keep = e[1] break end
    end
    if keep then redis.call('XTRIM', KEYS[1], 'MINID', keep)
    elseif #head > 0 then redis.call('XTRIM', KEYS[1], 'MINID', '0-' .. offset) end
    redis.call('PEXPIRE', KEYS[1], ttl)
  else
    redis.call('PEXPIRE', KEYS[1], ARGV[7])
  end
end
if ARGV[2] == '1' then
  redis.call('SET', KEYS[3], epoch .. ':' .. offset, 'PX', ARGV[5])
end
local header = string.sub(ARGV[9], 1, -2) .. ',"e":' .. cjson.encode(epoch) .. ',"o":' .. offset .. '}'
redis.call('PUBLISH', ARGV[8], header .. '\n' .. ARGV[1])
return {epoch, offset, 0}
