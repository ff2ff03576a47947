-- Sliding log. ARGV[9]: the window in µs.
-- State: a sorted set with one member per unit taken (`<call nonce>:<i>`), scored by when it was taken (µs).
local w = tonumber(ARGV[9])
local kind = redis.call('TYPE', key)['ok']
if kind ~= 'zset' and kind ~= 'none' then
  if op == 'give' then
    return {}
  end
  redis.call('DEL', key)
end

-- Members in chunks (Lua's unpack has a stack limit).
local function remove(members)
  for i = 1, #members, 1000 do
    redis.call('ZREM', key, unpack(members, i, math.min(i + 999, #members)))
  end
end

if op == 'give' then
  local at = int(taken_at)
  remove(redis.call('ZRANGEBYSCORE', key, at, at, 'LIMIT', 0, int(cost)))
  return {}
end

redis.call('ZREMRANGEBYSCORE', key, '-inf', int(now - w))
local used = redis.call('ZCARD', key)
-- Time until the oldest entry leaves the window: when the remaining count next grows (µs).
local function next_free()
  local oldest = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
  if oldest[2] then
    return tonumber(oldest[2]) + w - now
  end
  return 0
end

local c = units(function(c) return used + c <= limit end, limit - used)
if used + c <= limit then
  local at = int(now)
  for i = 1, c, 500 do
    local args = {}
    for j = i, math.min(i + 499, c) do
      args[#args + 1] = at
      args[#args + 1] = nonce .. ':' .. j
    end
    redis.call('ZADD', key, unpack(args))
  end
  expire(w)
  return verdict(true, limit - used - c, next_free() * 1000, 0, 0, c)
end
-- The wait: until the unit whose leaving makes room for `c` more has left.
local wait = w
local k = used + c - limit
if k <= used then
  local entry = redis.call('ZRANGE', key, k - 1, k - 1, 'WITHSCORES')
  wait = tonumber(entry[2]) + w - now
end
return verdict(false, math.max(limit - used, 0), next_free() * 1000, wait * 1000, 0, 0)
