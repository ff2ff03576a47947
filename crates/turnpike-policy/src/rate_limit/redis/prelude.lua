-- Shared by every rate-limit script: this prelude, then the algorithm's own part. The scripts mirror
-- algorithm.rs line for line; see redis.rs for the layout of keys and arguments.
--
-- KEYS[1]   the counter
-- ARGV[1]   'take', 'batch' (take up to ARGV[6] units: as many as fit) or 'give'
-- ARGV[2]   now, in µs since the epoch: '' in production (the Redis server's clock, shared by every gateway);
--           tests drive time through it
-- ARGV[3]   the least TTL given to a key, in ms ('1' in production)
-- ARGV[4]   limit
-- ARGV[5]   burst
-- ARGV[6]   cost ('batch': the most units wanted)
-- ARGV[7]   'give': when the units were taken (the `now` of that take), µs
-- ARGV[8]   a string unique to this call (sliding log members)
-- ARGV[9..] the algorithm's parameters
--
-- Times kept in Redis are whole µs (Lua numbers are doubles: ns since the epoch would not be exact). Durations
-- returned are ns. A take or batch returns {allowed (0/1), remaining, reset, retry_after, delay, now (µs),
-- units granted}; a give returns nothing.

local key = KEYS[1]
local op = ARGV[1]
local now
if ARGV[2] ~= '' then
  now = tonumber(ARGV[2])
else
  local time = redis.call('TIME')
  now = tonumber(time[1]) * 1000000 + tonumber(time[2])
end
local min_ttl = tonumber(ARGV[3])
local limit = tonumber(ARGV[4])
local burst = tonumber(ARGV[5])
local cost = tonumber(ARGV[6])
local taken_at = tonumber(ARGV[7])
local nonce = ARGV[8]

-- Slack for floating-point counts, as algorithm.rs.
local EPSILON = 1e-9

-- An integer as Redis should get it (tostring keeps only 14 digits).
local function int(x)
  return string.format('%d', x)
end

-- A float that reads back exactly.
local function float(x)
  return string.format('%.17g', x)
end

-- A duration in ns as a reply can carry it (replies truncate numbers to 64-bit integers).
local function ns(x)
  if x ~= x or x < 0 then
    return 0
  end
  return math.min(x, 9e18)
end

-- Keys live until their counter is back to its initial state: `us` from now.
local function expire(us)
  local ms = math.ceil(us / 1000)
  if ms ~= ms or ms > 1e12 then
    ms = 1e12
  end
  ms = math.max(ms, min_ttl, 1)
  redis.call('PEXPIRE', key, int(ms))
end

-- The fields of the hash counter `tag`, or nil when there is none. Another algorithm's counter (the limit changed
-- algorithm in a reload) is dropped by a take, which starts afresh as `Algorithm::take` does, and ignored by a give.
local function load(tag, ...)
  local kind = redis.call('TYPE', key)['ok']
  if kind == 'none' then
    return nil
  end
  if kind == 'hash' then
    local values = redis.call('HMGET', key, 'a', ...)
    if values[1] == tag then
      return values
    end
  end
  if op ~= 'give' then
    redis.call('DEL', key)
  end
  return nil
end

local function verdict(allowed, remaining, reset, retry_after, delay, granted)
  return {allowed and 1 or 0, remaining, ns(reset), ns(retry_after), ns(delay), now, granted}
end

-- The units to decide: the cost asked for a take. For a batch, the most units in 1..cost that `fits` allows,
-- searched from the estimate `guess`; 1 when none fits (the verdict is then a refused single unit).
local function units(fits, guess)
  if op ~= 'batch' then
    return cost
  end
  if guess ~= guess then
    guess = 1
  end
  local c = math.max(1, math.min(cost, math.floor(guess)))
  while c > 1 and not fits(c) do
    c = c - 1
  end
  while c < cost and fits(c + 1) do
    c = c + 1
  end
  return c
end
