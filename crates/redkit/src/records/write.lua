-- Writes one record with its index entries. ARGV[6]: put | patch | delete | incr,
-- ARGV[7]: id, ARGV[8]: if_version (-1: any), ARGV[9]: stamp (µs), ARGV[10]: '1' when
-- replaying an outage's operation, ARGV[11]: expiry (ms, 0: none), ARGV[12]: how long
-- tombstones are kept (µs), ARGV[13]: largest record (bytes of JSON). put/patch:
-- ARGV[14..] field, JSON text pairs ('' removes); incr: ARGV[14] field, ARGV[15] by.
-- Returns {status, …}: ok (version[, value]), conflict (current version), missing,
-- notint, stale, superseded, toolarge (size).
if not schema_is_current() then return {'stale'} end
purge(20)
local mode, id = ARGV[6], ARGV[7]
local if_version, ts, replay, expires = tonumber(ARGV[8]), tonumber(ARGV[9]), ARGV[10] == '1', tonumber(ARGV[11])
local dk = doc_key(id)
local meta = redis.call('HMGET', dk, '$v', '$t', '$e')
local exists = meta[1] ~= false
if exists and not live(meta[3]) then
  remove(id)
  exists = false
end
local version = exists and tonumber(meta[1]) or 0
if replay then
  -- An outage's operation loses to a whole-record write or a delete made after it.
  if exists then
    if tonumber(meta[2]) >= ts then return {'superseded'} end
  else
    local t = redis.call('ZSCORE', tomb_key, id)
    if t and tonumber(t) >= ts then return {'superseded'} end
  end
end
if if_version >= 0 and if_version ~= version then return {'conflict', version} end
-- Replays move versions on by two, so a version answered in the outage never matches.
local next_version = version + (replay and 2 or 1)
local function set_fields(from)
  local i = from
  while i <= #ARGV do
    if ARGV[i + 1] == '' then
      redis.call('HDEL', dk, ARGV[i])
    else
      redis.call('HSET', dk, ARGV[i], ARGV[i + 1])
    end
    i = i + 2
  end
end
local function finish()
  redis.call('HSET', dk, '$v', next_version, '$e', expires)
  index(id, dk)
  redis.call('ZADD', all_key, 0, id)
  if expires > 0 then redis.call('ZADD', exp_key, expires, id) else redis.call('ZREM', exp_key, id) end
end
if mode == 'put' then
  if exists then
    unindex(id, dk)
    redis.call('DEL', dk)
  end
  set_fields(14)
  redis.call('HSET', dk, '$t', ts)
  finish()
  return {'ok', next_version}
elseif mode == 'patch' then
  if not exists then return {'missing'} end
  -- The merged record's size as JSON text ({"k":v,…}), checked before anything changes.
  local fields = {}
  local flat = redis.call('HGETALL', dk)
  for i = 1, #flat, 2 do
    if string.sub(flat[i], 1, 1) ~= '$' then fields[flat[i]] = #flat[i + 1] end
  end
  for i = 14, #ARGV, 2 do
    fields[ARGV[i]] = ARGV[i + 1] ~= '' and #ARGV[i + 1] or nil
  end
  local size, n = 2, 0
  for k, len in pairs(fields) do
    size, n = size + #k + 3 + len, n + 1
  end
  if n > 1 then size = size + n - 1 end
  if size > tonumber(ARGV[13]) then return {'toolarge', size} end
  unindex(id, dk)
  set_fields(14)
  finish()
  return {'ok', next_version}
elseif mode == 'incr' then
  local field, by = ARGV[14], ARGV[15]
  local value
  if exists then
    local cur = redis.call('HGET', dk, field)
    if cur and not string.match(cur, '^%-?%d+$') then return {'notint'} end
    local n = tonumber(cur or '0') + tonumber(by)
    if n >= 9.2e18 or n <= -9.2e18 then return {'notint'} end
    unindex(id, dk)
    value = redis.call('HINCRBY', dk, field, by)
  else
    value = redis.call('HINCRBY', dk, field, by)
    redis.call('HSET', dk, '$t', ts)
  end
  finish()
  return {'ok', next_version, value}
else -- delete
  if exists then remove(id) end
  redis.call('ZADD', tomb_key, ts, id)
  redis.call('ZREMRANGEBYSCORE', tomb_key, '-inf', ts - tonumber(ARGV[12]))
  return {'ok', exists and 1 or 0}
end
