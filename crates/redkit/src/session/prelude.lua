-- Shared by the session scripts: Redis's clock, and the live-session check.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

-- Meta fields of a flat HGETALL list: _u user, _c created, _l last seen, _i idle ms,
-- _a absolute deadline (ms).
local function meta_of(all)
  local meta = {}
  for i = 1, #all, 2 do
    if string.sub(all[i], 1, 1) == '_' then meta[all[i]] = tonumber(all[i + 1]) end
  end
  return meta
end

-- Whether a session with this meta is past its absolute or idle deadline.
local function expired(meta)
  return now >= meta['_a'] or now >= meta['_l'] + meta['_i']
end

