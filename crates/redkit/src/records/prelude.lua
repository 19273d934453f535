-- Shared by the record scripts. ARGV[1]: the collection's key prefix (rk:{rec:NAME}; every
-- key below shares its hash tag), ARGV[2]: the schema stamp the caller wrote for,
-- ARGV[3]: now (ms), ARGV[4]/ARGV[5]: fields with an equal / range index, '\n'-separated.
-- A record is one string: a header line 'VERSION STAMP EXPIRY\n' (stamp of the last
-- whole-record write in µs, expiry in ms, 0: none) and then each field as
-- 'LEN:NAME' 'LEN:JSONTEXT' (byte lengths), so scripts change fields without parsing JSON.
-- Indexes: base:q:FIELD, a sorted set of 'JSONTEXT\0ID' (score 0: by value, then id);
-- base:r:FIELD, ids scored by the number. base:all: every id (score 0); base:exp: ids with
-- an expiry, scored by it; base:tomb: deleted ids scored by the delete's stamp.
local base, stamp, now = ARGV[1], ARGV[2], tonumber(ARGV[3])
local def_key, all_key, exp_key, tomb_key = base .. ':def', base .. ':all', base .. ':exp', base .. ':tomb'
local function split(s)
  local t = {}
  for p in string.gmatch(s, '[^\n]+') do t[#t + 1] = p end
  return t
end
local eq_fields, range_fields = split(ARGV[4]), split(ARGV[5])
local function doc_key(id) return base .. ':d:' .. id end
local function schema_is_current() return redis.call('HGET', def_key, 'stamp') == stamp end
-- A stored record: {v = version, t = stamp (text), e = expiry, keys = {names in order},
-- vals = {name = JSON text}}.
local function decode(s)
  local nl = string.find(s, '\n', 1, true)
  local v, t, e = string.match(string.sub(s, 1, nl - 1), '^(%d+) (%d+) (%d+)$')
  local r = {v = tonumber(v), t = t, e = tonumber(e), keys = {}, vals = {}}
  local i, n = nl + 1, #s
  while i <= n do
    local c = string.find(s, ':', i, true)
    local k = string.sub(s, c + 1, c + tonumber(string.sub(s, i, c - 1)))
    i = c + #k + 1
    c = string.find(s, ':', i, true)
    local len = tonumber(string.sub(s, i, c - 1))
    r.keys[#r.keys + 1] = k
    r.vals[k] = string.sub(s, c + 1, c + len)
    i = c + len + 1
  end
  return r
end
local function encode(r)
  local parts = {string.format('%d %s %d\n', r.v, r.t, r.e)}
  for _, k in ipairs(r.keys) do
    local val = r.vals[k]
    if val then parts[#parts + 1] = #k .. ':' .. k .. #val .. ':' .. val end
  end
  return table.concat(parts)
end
-- The expiry in a stored record's header, without decoding its fields.
local function expiry_of(s)
  return tonumber(string.match(s, '^%d+ %d+ (%d+)\n'))
end
local function indexable(v)
  local c = string.sub(v, 1, 1)
  return c ~= '{' and c ~= '[' and v ~= 'null'
end
local function index(id, vals)
  for _, f in ipairs(eq_fields) do
    local v = vals[f]
    if v and indexable(v) then redis.call('ZADD', base .. ':q:' .. f, 0, v .. '\0' .. id) end
  end
  for _, f in ipairs(range_fields) do
    local n = tonumber(vals[f] or '')
    if n then redis.call('ZADD', base .. ':r:' .. f, n, id) end
  end
end
local function unindex(id, vals)
  for _, f in ipairs(eq_fields) do
    local v = vals[f]
    if v then redis.call('ZREM', base .. ':q:' .. f, v .. '\0' .. id) end
  end
  for _, f in ipairs(range_fields) do redis.call('ZREM', base .. ':r:' .. f, id) end
end
local function remove(id)
  local dk = doc_key(id)
  local raw = redis.call('GET', dk)
  if raw then unindex(id, decode(raw).vals) end
  redis.call('DEL', dk)
  redis.call('ZREM', all_key, id)
  redis.call('ZREM', exp_key, id)
end
local function purge(limit)
  local ids = redis.call('ZRANGE', exp_key, '-inf', now, 'BYSCORE', 'LIMIT', 0, limit)
  for _, id in ipairs(ids) do remove(id) end
  return #ids
end
local function live(e) return e == 0 or e > now end
