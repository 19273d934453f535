-- Shared by the session scripts: Redis's clock, write stamps, and the live-session check.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
-- Microseconds since the Unix epoch (below 2^53, so exact in Lua's doubles).
local now_us = tonumber(t[1]) * 1000000 + tonumber(t[2])

-- Meta fields of a flat HGETALL list: _u user, _c created, _l last seen, _i idle ms,
-- _a absolute deadline (ms), _t stamp of the last change (µs, hybrid-logical), _cu the
-- creation's stamp (µs; absent on sessions written back from an outage).
local function meta_of(all)
  local meta = {}
  for i = 1, #all, 2 do
    if string.sub(all[i], 1, 1) == '_' and all[i] ~= '_u' then meta[all[i]] = tonumber(all[i + 1]) end
  end
  meta['_t'] = meta['_t'] or 0
  return meta
end

-- Whether a session with this meta is past its absolute or idle deadline.
local function expired(meta)
  return now >= meta['_a'] or now >= meta['_l'] + meta['_i']
end

-- The stamp of a change now: Redis's clock, or just past the session's last stamp.
local function stamp(meta)
  return math.max(now_us, meta['_t'] + 1)
end

-- Ms left before a session with this meta dies, if left idle from `last`.
local function ttl_ms(meta, last)
  return math.max(1, math.min(last + meta['_i'], meta['_a']) - now)
end

-- Tells other instances' mirrors: ARGV-supplied channel and instance, kind, stamp, name.
local function announce(channel, instance, kind, ts, name)
  redis.call('PUBLISH', channel, instance .. ' ' .. kind .. ' ' .. string.format('%.0f', ts) .. ' ' .. name)
end

-- A tombstone's value: the deletion's stamp, and the id the session moved to if the
-- deletion was a rotation ("STAMP" or "STAMP>NEWID").
local function tombstone_of(value)
  if not value then return nil, nil end
  return tonumber(string.match(value, '^(%d+)')), string.match(value, '>(.+)$')
end

-- Writes data fields with their own stamps. `args` from `first`: name ('d:NAME'), value,
-- stamp triples, `n` of them, then removed-field name ('d:NAME') and stamp pairs.
local function write_stamped(key, args, first, n, last)
  local i = first
  for _ = 1, n do
    redis.call('HSET', key, args[i], args[i + 1], 't:' .. string.sub(args[i], 3), args[i + 2])
    i = i + 3
  end
  while i < last do
    redis.call('HSET', key, 't:' .. string.sub(args[i], 3), args[i + 1])
    i = i + 2
  end
end
