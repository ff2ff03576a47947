-- Fixed window. ARGV[9]: the window in µs, aligned to the epoch; or '' for a calendar period, then ARGV[10] and
-- ARGV[11] its bounds around now [start, end) in µs and ARGV[12] ('give') the start of the period the units were
-- taken in (calendars are computed by the gateway).
-- State: a = 'window', s = the window's start (µs), n = units taken in it.
local every = nil
if ARGV[9] ~= '' then
  every = tonumber(ARGV[9])
end
local state = load('window', 's', 'n')
local start, count = 0, 0
if state then
  start, count = tonumber(state[2]), tonumber(state[3])
end

if op == 'give' then
  if state then
    local taken_start
    if every then
      taken_start = taken_at - taken_at % every
    else
      taken_start = tonumber(ARGV[12])
    end
    if start == taken_start then
      redis.call('HSET', key, 'n', int(math.max(count - cost, 0)))
    end
  end
  return {}
end

local window_start, window_end
if every then
  window_start = now - now % every
  window_end = window_start + every
else
  window_start, window_end = tonumber(ARGV[10]), tonumber(ARGV[11])
end
local rolled = start ~= window_start
if rolled then
  start, count = window_start, 0
end
local reset = math.max(window_end - now, 0)
local function save()
  redis.call('HSET', key, 'a', 'window', 's', int(start), 'n', int(count))
  expire(reset)
end

local c = units(function(c) return count + c <= limit end, limit - count)
if count + c <= limit then
  count = count + c
  save()
  return verdict(true, limit - count, reset * 1000, 0, 0, c)
end
if rolled then
  save()
end
return verdict(false, math.max(limit - count, 0), reset * 1000, reset * 1000, 0, 0)
