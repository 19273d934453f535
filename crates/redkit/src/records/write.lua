-- Writes one record with its index entries. ARGV[6]: put | patch | delete | incr,
-- ARGV[7]: id, ARGV[8]: if_version (-1: any), ARGV[9]: stamp (µs), ARGV[10]: when
-- replaying an outage's operation its unique id ('' otherwise: a live write), ARGV[11]: expiry (ms, 0: none), ARGV[12]: how long
-- tombstones are kept (µs), ARGV[13]: largest record (bytes of JSON). put/patch:
-- ARGV[14..] field, JSON text pairs ('' removes); incr: ARGV[14] field, ARGV[15] by.
-- Returns {status, …}: ok (version[, value]), conflict (current version), missing,
-- notint, stale, superseded, toolarge (size).
if not schema_is_current() then return {'stale'} end
purge(20)
local mode, id = ARGV[6], ARGV[7]
local if_version, ts, replay, expires = tonumber(ARGV[8]), ARGV[9], ARGV[10] ~= '', tonumber(ARGV[11])
local applied_key = base .. ':applied'
local dk = doc_key(id)
local raw = redis.call('GET', dk)
local cur = raw and decode(raw)
if cur and not live(cur.e) then
  remove(id)
  cur = nil
end
local version = cur and cur.v or 0
if replay then
  -- Replays are at least once (a batch that failed midway is offered again): an operation
  -- applied before is not applied twice.
  if redis.call('ZSCORE', applied_key, ARGV[10]) then return {'superseded'} end
  -- An outage's operation loses to a whole-record write or a delete made after it.
  if cur then
    if tonumber(cur.t) >= tonumber(ts) then return {'superseded'} end
  else
    local t = redis.call('ZSCORE', tomb_key, id)
    if t and tonumber(t) >= tonumber(ts) then return {'superseded'} end
  end
end
if if_version >= 0 and if_version ~= version then return {'conflict', version} end
-- Replays move versions on by two, so a version answered in the outage never matches.
local next_version = version + (replay and 2 or 1)
-- What a write answers; a replayed operation is remembered as applied (for as long as
-- tombstones are kept).
local function done(reply)
  if replay then
    redis.call('ZADD', applied_key, now, ARGV[10])
    redis.call('ZREMRANGEBYSCORE', applied_key, '-inf', now - math.floor(tonumber(ARGV[12]) / 1000))
  end
  return reply
end
local function store(r)
  r.v, r.e = next_version, expires
  redis.call('SET', dk, encode(r))
  index(id, r.vals)
  redis.call('ZADD', all_key, 0, id)
  if expires > 0 then redis.call('ZADD', exp_key, expires, id) else redis.call('ZREM', exp_key, id) end
end
if mode == 'put' then
  if cur then unindex(id, cur.vals) end
  local r = {t = ts, keys = {}, vals = {}}
  for i = 14, #ARGV, 2 do
    r.keys[#r.keys + 1] = ARGV[i]
    r.vals[ARGV[i]] = ARGV[i + 1]
  end
  store(r)
  return done({'ok', next_version})
elseif mode == 'patch' then
  if not cur then return {'missing'} end
  -- The merged record, held to the size limit (as JSON text: {"k":v,…}) before it is stored.
  for i = 14, #ARGV, 2 do
    local k, v = ARGV[i], ARGV[i + 1]
    if v == '' then
      cur.vals[k] = nil
    else
      if not cur.vals[k] then cur.keys[#cur.keys + 1] = k end
      cur.vals[k] = v
    end
  end
  local size, n = 2, 0
  for _, k in ipairs(cur.keys) do
    if cur.vals[k] then size, n = size + #k + 3 + #cur.vals[k], n + 1 end
  end
  if n > 1 then size = size + n - 1 end
  if size > tonumber(ARGV[13]) then return {'toolarge', size} end
  unindex(id, decode(raw).vals)
  store(cur)
  return done({'ok', next_version})
elseif mode == 'incr' then
  local field, by = ARGV[14], tonumber(ARGV[15])
  -- A record an increment creates has had no whole-record write: other instances' earlier
  -- increments (replayed later) still add to it.
  local r = cur or {t = '0', keys = {}, vals = {}}
  local old = r.vals[field]
  if old and not string.match(old, '^%-?%d+$') then return {'notint'} end
  -- Integers stay exact within ±2^53 (Lua's numbers are doubles, as JSON's are in most readers).
  local value = tonumber(old or '0') + by
  if value > 9007199254740991 or value < -9007199254740991 then return {'notint'} end
  if cur then unindex(id, cur.vals) end
  if not old then r.keys[#r.keys + 1] = field end
  r.vals[field] = string.format('%.0f', value)
  store(r)
  return done({'ok', next_version, r.vals[field]})
else -- delete
  if cur then remove(id) end
  redis.call('ZADD', tomb_key, ts, id)
  redis.call('ZREMRANGEBYSCORE', tomb_key, '-inf', tonumber(ts) - tonumber(ARGV[12]))
  return done({'ok', cur and 1 or 0})
end
