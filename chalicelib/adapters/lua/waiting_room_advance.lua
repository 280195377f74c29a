-- Shared by the waiting room's scripts (prepended to each): moves the room's serving number on to `now`.
-- The room admits `rate` people a second in join order: while anyone waits (serving < issued) the serving
-- number grows by rate per second, continuously; it never passes the last number issued, and an empty room
-- gathers no credit (its clock restarts at the next touch). So the n-th ticket's turn is known when it is
-- issued: join time + (n - serving then) / rate.
-- The room's clock never goes back: a caller's `now` read before a wait (for a connection, the GIL, another
-- process' clock a little behind) counts as the room's time so far. Taken as given, it counted the same
-- milliseconds twice (admitting faster than the rate) and gave a later ticket an earlier turn (the bench's
-- queue scenario: 24 % of 10,000 tickets out of join order). -> issued, serving, the room's now.
local function advance(room, now, rate)
  local state = redis.call('HMGET', room, 'issued', 'serving', 'at')
  local issued = tonumber(state[1] or '0')
  local serving = tonumber(state[2] or '0')
  local at = tonumber(state[3] or tostring(now))
  if now < at then
    now = at
  end
  if serving < issued then
    serving = math.min(issued, serving + (now - at) * rate / 1000)
  end
  redis.call('HSET', room, 'serving', tostring(serving), 'at', tostring(now))
  return issued, serving, now
end
