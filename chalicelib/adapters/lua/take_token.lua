-- One token from a bucket of `capacity` tokens refilled at one per `interval` ms: a token bucket kept as
-- GCRA (the generic cell rate algorithm), which stores a single number per bucket, the time at which the
-- bucket would be full again ("theoretical arrival time"), instead of a count and a refill time.
--   KEYS[1]  the bucket
--   ARGV[1]  now (ms, the caller's clock)   ARGV[2]  interval (ms per token)   ARGV[3]  capacity (tokens)
-- -> 0 when a token was taken, else how many ms until one is back (nothing is written then).
local now = tonumber(ARGV[1])
local interval = tonumber(ARGV[2])
local burst = interval * tonumber(ARGV[3])
local full_at = tonumber(redis.call('GET', KEYS[1]) or '0')
if full_at < now then
  full_at = now
end
local wait = full_at + interval - burst - now
if wait > 0 then
  return math.ceil(wait)
end
full_at = full_at + interval
-- The key lives as long as the bucket is not full: an idle user costs nothing.
redis.call('SET', KEYS[1], full_at, 'PX', math.max(1, math.ceil(full_at - now)))
return 0
