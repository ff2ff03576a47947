-- Sliding window counter. ARGV[9]: the window in µs.
-- State: a = 'sliding', s = this window's start (µs), p = the previous window's count, c = this one's.
local w = tonumber(ARGV[9])
local state = load('sliding', 's', 'p', 'c')
local start, prev, cur = 0, 0, 0
if state then
  start, prev, cur = tonumber(state[2]), tonumber(state[3]), tonumber(state[4])
end

if op == 'give' then
  if state then
    local taken_window = taken_at - taken_at % w
    if start == taken_window then
      redis.call('HSET', key, 'c', int(math.max(cur - cost, 0)))
    elseif start == taken_window + w then
      redis.call('HSET', key, 'p', int(math.max(prev - cost, 0)))
    end
  end
  return {}
end

-- roll_sliding
local current = now - now % w
local rolled = start ~= current
if rolled then
  if start + w == current then
    prev = cur
  else
    prev = 0
  end
  cur = 0
  start = current
end
local elapsed = now - start
local weight = (w - elapsed) / w
local estimate = prev * weight + cur
local function save()
  redis.call('HSET', key, 'a', 'sliding', 's', int(start), 'p', int(prev), 'c', int(cur))
  expire(start + 2 * w - now)
end

local c = units(function(c) return estimate + c <= limit + EPSILON end, limit + EPSILON - estimate)
if estimate + c <= limit + EPSILON then
  cur = cur + c
  save()
  local remaining = math.max(math.floor(limit - estimate - c + EPSILON), 0)
  return verdict(true, remaining, (w - elapsed) * 1000, 0, 0, c)
end
if rolled then
  save()
end
-- sliding_wait, in ns
local left = w - elapsed
local wait
if c + cur <= limit and prev > 0 then
  local room = limit - c - cur
  wait = math.ceil(math.max(left - room * w / prev, 0) * 1000)
elseif c > limit or cur == 0 then
  wait = left * 1000
else
  local room = limit - c
  wait = left * 1000 + math.ceil(math.max(w - room * w / cur, 0) * 1000)
end
local remaining = math.max(math.floor(limit - estimate + EPSILON), 0)
return verdict(false, remaining, left * 1000, wait, 0, 0)
