-- Maintenance of one collection. ARGV[6]: purge | reindex | clear.
-- purge: ARGV[7] most expired records to delete; returns how many.
-- reindex: ARGV[7] field, ARGV[8] 'equal' | 'range', ARGV[9] the last id done ('' none),
--   ARGV[10] batch; files the batch's records in that index; returns the last id ('' done).
-- clear (the collection is no longer defined): ARGV[7] batch; deletes that many records
--   and, once none is left, the collection's other keys; returns how many are left.
local op = ARGV[6]
if op == 'purge' then
  return purge(tonumber(ARGV[7]))
elseif op == 'reindex' then
  if not schema_is_current() then return redis.error_reply('STALE the collection was redefined') end
  local field, kind, after = ARGV[7], ARGV[8], ARGV[9]
  local ids = redis.call('ZRANGEBYLEX', all_key, after == '' and '-' or '(' .. after, '+', 'LIMIT', 0, tonumber(ARGV[10]))
  for _, id in ipairs(ids) do
    local raw = redis.call('GET', doc_key(id))
    local v = raw and decode(raw).vals[field]
    if v and kind == 'equal' and indexable(v) then
      redis.call('ZADD', base .. ':q:' .. field, 0, v .. '\0' .. id)
    elseif v and kind == 'range' and tonumber(v) then
      redis.call('ZADD', base .. ':r:' .. field, tonumber(v), id)
    end
  end
  if #ids < tonumber(ARGV[10]) then return '' end
  return ids[#ids]
else -- clear
  local ids = redis.call('ZRANGE', all_key, 0, tonumber(ARGV[7]) - 1)
  for _, id in ipairs(ids) do remove(id) end
  local left = redis.call('ZCARD', all_key)
  if left == 0 then
    for _, f in ipairs(eq_fields) do redis.call('DEL', base .. ':q:' .. f) end
    for _, f in ipairs(range_fields) do redis.call('DEL', base .. ':r:' .. f) end
    redis.call('DEL', exp_key, tomb_key)
  end
  return left
end
