-- Replays a delete (logout, rotation) made during an outage: session KEYS[1] goes, and
-- tombstone KEYS[2] keeps it from coming back until its absolute deadline. A delete wins
-- over any write, whatever its stamp: session ids are never reused.
-- ARGV[1]: the delete's stamp (µs), ARGV[2]: the absolute deadline (ms) the outage knew,
-- 0 if it did not know the session, ARGV[3]: channel, ARGV[4]: instance, ARGV[5]: id.
-- ARGV[6] (optional): only if the session was created before this stamp (µs) — revoke-all.
-- Returns 1 if a live session was deleted.
local all = redis.call('HGETALL', KEYS[1])
local deadline = tonumber(ARGV[2])
local live = 0
if #all > 0 then
  local meta = meta_of(all)
  if ARGV[6] and meta['_c'] * 1000 >= tonumber(ARGV[6]) then return 0 end
  deadline = math.max(deadline, meta['_a'])
  if not expired(meta) then live = 1 end
  redis.call('DEL', KEYS[1])
end
if deadline > now then
  local old = tonumber(redis.call('GET', KEYS[2]) or '0')
  redis.call('SET', KEYS[2], string.format('%.0f', math.max(old, tonumber(ARGV[1]))), 'PXAT', deadline)
end
if #all > 0 then announce(ARGV[3], ARGV[4], 'd', tonumber(ARGV[1]), ARGV[5]) end
return live
