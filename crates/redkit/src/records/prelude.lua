-- Shared by the record scripts. ARGV[1]: the collection's key prefix (rk:{rec:NAME}; every
-- key below shares its hash tag), ARGV[2]: the schema stamp the caller wrote for,
-- ARGV[3]: now (ms), ARGV[4]/ARGV[5]: fields with an equal / range index, '\n'-separated.
-- A record is a hash: its fields' JSON texts plus $v (version), $t (stamp of the last
-- whole-record write, µs), $e (expiry ms, 0: none). Indexes: base:q:FIELD, a sorted set of
-- 'JSONTEXT\0ID' (score 0: by value, then id); base:r:FIELD, ids scored by the number.
-- base:all: every id (score 0); base:exp: ids with an expiry, scored by it;
-- base:tomb: deleted ids scored by the delete's stamp.
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
local function indexable(v)
  local c = string.sub(v, 1, 1)
  return c ~= '{' and c ~= '[' and v ~= 'null'
end
local function index(id, dk)
  for _, f in ipairs(eq_fields) do
    local v = redis.call('HGET', dk, f)
    if v and indexable(v) then redis.call('ZADD', base .. ':q:' .. f, 0, v .. '\0' .. id) end
  end
  for _, f in ipairs(range_fields) do
    local n = tonumber(redis.call('HGET', dk, f) or '')
    if n then redis.call('ZADD', base .. ':r:' .. f, n, id) end
  end
end
local function unindex(id, dk)
  for _, f in ipairs(eq_fields) do
    local v = redis.call('HGET', dk, f)
    if v then redis.call('ZREM', base .. ':q:' .. f, v .. '\0' .. id) end
  end
  for _, f in ipairs(range_fields) do redis.call('ZREM', base .. ':r:' .. f, id) end
end
local function remove(id)
  local dk = doc_key(id)
  unindex(id, dk)
  redis.call('DEL', dk)
  redis.call('ZREM', all_key, id)
  redis.call('ZREM', exp_key, id)
end
local function purge(limit)
  local ids = redis.call('ZRANGE', exp_key, '-inf', now, 'BYSCORE', 'LIMIT', 0, limit)
  for _, id in ipairs(ids) do remove(id) end
  return #ids
end
local function live(e) return e and (tonumber(e) == 0 or tonumber(e) > now) end
