-- Concurrency. ARGV[9]: how long the count lives after the last request it allowed, in µs (slots a gateway
-- never gave back, because it crashed, are freed after that much quiet). A request counts 1 whatever its cost.
-- State: a = 'inflight', n = requests in flight.
local state = load('inflight', 'n')
local n = 0
if state then
  n = tonumber(state[2])
end

if op == 'give' then
  if state and n > 0 then
    redis.call('HSET', key, 'n', int(n - 1))
  end
  return {}
end

if n < limit then
  n = n + 1
  redis.call('HSET', key, 'a', 'inflight', 'n', int(n))
  expire(tonumber(ARGV[9]))
  return verdict(true, limit - n, 0, 0, 0, 1)
end
-- No way to know when one ends: suggest a second.
return verdict(false, 0, 0, 1000000000, 0, 0)
