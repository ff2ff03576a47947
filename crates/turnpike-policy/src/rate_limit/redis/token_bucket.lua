-- Token bucket. ARGV[9]: the window in µs (`limit` tokens refill per window, up to `burst`).
-- State: a = 'bucket', t = tokens at `l`, l = when they were counted (µs).
local w = tonumber(ARGV[9])
local state = load('bucket', 't', 'l')
local tokens, last = burst, 0
if state then
  tokens, last = tonumber(state[2]), tonumber(state[3])
end

if op == 'give' then
  if state then
    redis.call('HSET', key, 't', float(math.min(tokens + cost, burst)))
  end
  return {}
end

local per = limit / w
tokens = math.min(tokens + math.max(now - last, 0) * per, burst)
last = math.max(now, last)
local function save()
  redis.call('HSET', key, 'a', 'bucket', 't', float(tokens), 'l', int(last))
  expire((burst - tokens) / per)
end

local c = units(function(c) return tokens + EPSILON >= c end, tokens + EPSILON)
if tokens + EPSILON >= c then
  tokens = math.max(tokens - c, 0)
  save()
  return verdict(true, math.floor(tokens + EPSILON), math.ceil((burst - tokens) / per * 1000), 0, 0, c)
end
save()
local full = math.ceil((burst - tokens) / per * 1000)
local wait = full
if c <= burst then
  wait = math.ceil((c - tokens) / per * 1000)
end
return verdict(false, math.floor(tokens + EPSILON), full, wait, 0, 0)
