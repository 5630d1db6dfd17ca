local seq = redis.call('HINCRBY', KEYS[1], 'seq', 1)
local epoch = redis.call('HGET', KEYS[1], 'epoch')
if not epoch then
  local t = redis.call('TIME')
  epoch = string.format('%x.%x', tonumber(t[1]), tonumber(t[2]))
  redis.call('HSET', KEYS[1], 'epoch', epoch)
  redis.call('DEL', KEYS[2])
end
local function varint(v)
  local t = {}
  while v >= 128 do t[#t + 1] = string.char(v % 128 + 128); v = math.floor(v / 128) end
  t[#t + 1] = string.char(v)
  return table.concat(t)
end
local msg = ARGV[1] .. '\32' .. varint(seq) .. '\170\1' .. varint(#epoch) .. epoch
if tonumber(ARGV[3]) > 0 then
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], seq .. '-0', 'e', msg)
  redis.call('EXPIRE', KEYS[2], ARGV[4])
end
redis.call('EXPIRE', KEYS[1], ARGV[4])
redis.call(ARGV[5] == 'SPUBLISH' and 'SPUBLISH' or 'PUBLISH', ARGV[2], msg)
return seq
