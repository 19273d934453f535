-- Reads each key with its remaining lifetime: returns {{value|false, pttl_ms}, ...}.
local out = {}
for i, key in ipairs(KEYS) do
  local value = redis.call('GET', key)
  if value then
    out[i] = {value, redis.call('PTTL', key)}
  else
    out[i] = {false, -2}
  end
end
return out
