-- Replays a delete (logout, rotation) made during an outage: session KEYS[1] goes, and
-- tombstone KEYS[2] keeps it from coming back until its absolute deadline. A delete wins
-- over any write, whatever its stamp: session ids are never reused. A logout of a session
-- that was rotated meanwhile follows it to the new id (a logout holds for what the session
-- became).
-- ARGV[1]: the delete's stamp (µs), ARGV[2]: the absolute deadline (ms) the outage knew,
-- 0 if it did not know the session, ARGV[3]: channel, ARGV[4]: instance, ARGV[5]: id,
-- ARGV[6]: the id a rotation moved it to ('' for a logout), ARGV[7] (optional): only if
-- the session was created before this stamp (µs) — revoke-all.
-- Returns {1, fields...} (the session as it was) if a live session was deleted, {2, new
-- id} to follow, 0 otherwise.
local all = redis.call('HGETALL', KEYS[1])
local deadline = tonumber(ARGV[2])
local live = 0
if #all > 0 then
  local meta = meta_of(all)
  -- Created at or after the revoke: spared. Sessions written back from an outage have
  -- only the millisecond; one made within the revoke's millisecond is revoked.
  if ARGV[7] and (meta['_cu'] or meta['_c'] * 1000) >= tonumber(ARGV[7]) then return 0 end
  deadline = math.max(deadline, meta['_a'])
  if not expired(meta) then live = 1 end
  redis.call('DEL', KEYS[1])
end
local old_ts, moved = tombstone_of(redis.call('GET', KEYS[2]))
if #all == 0 and moved and ARGV[6] == '' then return {2, moved} end
if deadline > now and not moved then
  local value = string.format('%.0f', math.max(old_ts or 0, tonumber(ARGV[1])))
  if ARGV[6] ~= '' then value = value .. '>' .. ARGV[6] end
  redis.call('SET', KEYS[2], value, 'PXAT', deadline)
end
if #all > 0 then announce(ARGV[3], ARGV[4], 'd', tonumber(ARGV[1]), ARGV[5]) end
if live == 0 then return 0 end
local out = {1}
for i = 1, #all do out[#out + 1] = all[i] end
return out
