-- One token from each of several buckets, all or none: a token bucket kept as GCRA (the generic cell rate
-- algorithm) stores a single number per bucket, the time at which it would be full again, instead of a count
-- and a refill time.
--   KEYS     the buckets
--   ARGV[1]  now (ms, the caller's clock); then per bucket: interval (ms per token), capacity (tokens)
-- -> {0, 0} when a token was taken from every bucket, else {ms until the refusing bucket has one, its index}
--    (nothing is written then).
local now = tonumber(ARGV[1])
local full_at = {}
for i, key in ipairs(KEYS) do
  local interval = tonumber(ARGV[2 * i])
  local burst = interval * tonumber(ARGV[2 * i + 1])
  local at = tonumber(redis.call('GET', key) or '0')
  if at < now then
    at = now
  end
  local wait = at + interval - burst - now
  if wait > 0 then
    return {math.ceil(wait), i}
  end
  full_at[i] = at + interval
end
for i, key in ipairs(KEYS) do
  -- The key lives as long as the bucket is not full: an idle user costs nothing.
  redis.call('SET', key, full_at[i], 'PX', math.max(1, math.ceil(full_at[i] - now)))
end
return {0, 0}
