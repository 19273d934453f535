-- One page of a query. ARGV[6]: equalities as '\n'-separated field, JSON text lines,
-- ARGV[7]: range field ('' none), ARGV[8]/ARGV[9]: its min/max, ARGV[10]: '1' descending,
-- ARGV[11]: limit, ARGV[12]/ARGV[13]: the cursor's score/id ('' none), ARGV[14]: most
-- index entries to examine. The driver is the range index when there is a range, else
-- the smallest equality, else every id; the other equalities filter it.
-- Returns {status, next score, next id, {id, stored record}, …}.
if not schema_is_current() then return {'stale'} end
purge(20)
local eqs = split(ARGV[6])
local range_field, desc, limit = ARGV[7], ARGV[10] == '1', tonumber(ARGV[11])
local cur_score, cur_id, budget = ARGV[12], ARGV[13], tonumber(ARGV[14])
local filters = {}
for i = 1, #eqs, 2 do filters[#filters + 1] = {base .. ':q:' .. eqs[i], eqs[i + 1]} end
local out = {'ok', '', ''}
local found, examined = 0, 0
-- Considers one id; returns true when the page is full or the budget spent.
local function consider(id, score)
  examined = examined + 1
  local ok = true
  for _, f in ipairs(filters) do
    if not redis.call('ZSCORE', f[1], f[2] .. '\0' .. id) then ok = false break end
  end
  if ok then
    local raw = redis.call('GET', doc_key(id))
    if raw and live(expiry_of(raw)) then
      out[#out + 1] = {id, raw}
      found = found + 1
    end
  end
  if found >= limit or examined >= budget then
    out[2], out[3] = score or '', id
    return true
  end
  return false
end
local chunk = 100
if range_field ~= '' then
  local key = base .. ':r:' .. range_field
  local lo, hi = ARGV[8], ARGV[9]
  local rank
  if cur_id ~= '' then
    local s = redis.call('ZSCORE', key, cur_id)
    if s and tonumber(s) == tonumber(cur_score) then
      rank = (desc and redis.call('ZREVRANK', key, cur_id) or redis.call('ZRANK', key, cur_id)) + 1
    elseif desc then
      rank = redis.call('ZCOUNT', key, cur_score, '+inf')
    else
      rank = redis.call('ZCOUNT', key, '-inf', cur_score)
    end
  elseif desc then
    rank = redis.call('ZCOUNT', key, '(' .. hi, '+inf')
  else
    rank = redis.call('ZCOUNT', key, '-inf', '(' .. lo)
  end
  while true do
    local page = desc and redis.call('ZREVRANGE', key, rank, rank + chunk - 1, 'WITHSCORES')
      or redis.call('ZRANGE', key, rank, rank + chunk - 1, 'WITHSCORES')
    if #page == 0 then return out end
    for i = 1, #page, 2 do
      local s = tonumber(page[i + 1])
      if (desc and s < tonumber(lo)) or (not desc and s > tonumber(hi)) then return out end
      if consider(page[i], page[i + 1]) then return out end
    end
    rank = rank + chunk
  end
end
local key, prefix = all_key, ''
if #filters > 0 then
  local best
  for i, f in ipairs(filters) do
    local n = redis.call('ZLEXCOUNT', f[1], '[' .. f[2] .. '\0', '(' .. f[2] .. '\1')
    if not best or n < best then best, key, prefix = n, f[1], f[2] .. '\0' end
  end
end
local first = prefix == '' and '-' or '[' .. prefix
local last = prefix == '' and '+' or '(' .. string.sub(prefix, 1, -2) .. '\1'
if cur_id ~= '' then
  if desc then last = '(' .. prefix .. cur_id else first = '(' .. prefix .. cur_id end
end
while true do
  local page = desc and redis.call('ZREVRANGEBYLEX', key, last, first, 'LIMIT', 0, chunk)
    or redis.call('ZRANGEBYLEX', key, first, last, 'LIMIT', 0, chunk)
  if #page == 0 then return out end
  for _, m in ipairs(page) do
    local id = string.sub(m, #prefix + 1)
    if consider(id, nil) then return out end
    if desc then last = '(' .. m else first = '(' .. m end
  end
end
