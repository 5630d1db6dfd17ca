local m = redis.call('HMGET', KEYS[1], 'seq', 'epoch')
if not m[2] and ARGV[1] == 'after' then
  local t = redis.call('TIME')
  m[2] = string.format('%x.%x', tonumber(t[1]), tonumber(t[2]))
  m[1] = m[1] or '0'
  redis.call('HSET', KEYS[1], 'seq', m[1], 'epoch', m[2])
  redis.call('EXPIRE', KEYS[1], ARGV[4])
  redis.call('DEL', KEYS[2])
end
local out = {m[1] or '0', m[2] or ''}
local n = tonumber(ARGV[3])
if not m[2] or n <= 0 then return out end
local r
if ARGV[1] == 'after' then
  r = redis.call('XRANGE', KEYS[2], '(' .. ARGV[2] .. '-0', '+', 'COUNT', n)
else
  r = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', n)
  local k = #r
  for i = 1, math.floor(k / 2) do r[i], r[k + 1 - i] = r[k + 1 - i], r[i] end
end
for _, e in ipairs(r) do out[#out + 1] = e[2][2] end
return out
