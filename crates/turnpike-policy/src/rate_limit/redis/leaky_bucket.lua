-- Leaky bucket (GCRA). ARGV[9]: the emission interval in ns (`emission_interval(window, limit)`); ARGV[10]: the
-- longest delay in ns when shaping, '' when policing.
-- State: a = 'tat', the theoretical arrival time as u = whole µs and r = the ns past them, so that times
-- relative to now are exact ns as in algorithm.rs.
local interval = tonumber(ARGV[9])
local max_delay = nil
if ARGV[10] ~= '' then
  max_delay = tonumber(ARGV[10])
end
local tolerance = interval * burst
local state = load('tat', 'u', 'r')
local tat_us, tat_ns = 0, 0
if state then
  tat_us, tat_ns = tonumber(state[2]), tonumber(state[3])
end
-- max(tat, now) - now, in ns
local ahead_now = 0
if tat_us >= now then
  ahead_now = (tat_us - now) * 1000 + tat_ns
end
-- tat = now + ahead
local function save(ahead)
  redis.call('HSET', key, 'a', 'tat', 'u', int(now + math.floor(ahead / 1000)), 'r', int(ahead % 1000))
  expire(ahead / 1000)
end

if op == 'give' then
  if state and ahead_now > 0 then
    save(math.max(ahead_now - interval * cost, 0))
  end
  return {}
end

local slack = max_delay or 0
local c = units(function(c) return ahead_now + interval * c - tolerance <= slack end,
  (tolerance + slack - ahead_now) / interval)
local ahead = ahead_now + interval * c
if ahead <= tolerance then
  save(ahead)
  return verdict(true, math.floor((tolerance - ahead) / interval), ahead, 0, 0, c)
end
local late = ahead - tolerance
if max_delay then
  if late <= max_delay then
    save(ahead)
    return verdict(true, 0, ahead, 0, late, c)
  end
  return verdict(false, 0, ahead_now, late - max_delay, 0, 0)
end
return verdict(false, math.floor(math.max(tolerance - ahead_now, 0) / interval), ahead_now, late, 0, 0)
