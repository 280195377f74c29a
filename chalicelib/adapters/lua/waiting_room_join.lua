-- Join a performance's queue, once per user: the user's ticket while it lives, else a new one at the back.
-- A ticket lives until its collect window closes uncollected, or, once collected, until its admission
-- expires: then its user may queue again for a new admission.
--   KEYS  room, tickets (ticket -> JSON), users (user -> ticket)
--   ARGV  now (ms), rate (per second), user, a new ticket id, collect window (ms), keys' lifetime (ms),
--         an admission's lifetime (ms)
-- -> {ticket, number, serving, turn (ms), collected (ms or ''), 1 if new else 0, the room's now (ms)}
local room, tickets, users = KEYS[1], KEYS[2], KEYS[3]
local rate, user = tonumber(ARGV[2]), ARGV[3]
local collect_ms, lifetime_ms, admission_ms = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
local issued, serving, now = advance(room, tonumber(ARGV[1]), rate)
local held = redis.call('HGET', users, user)
if held then
  local ticket = cjson.decode(redis.call('HGET', tickets, held))
  local lives = (ticket.col and now < ticket.col + admission_ms) or (not ticket.col and now <= ticket.turn + collect_ms)
  if lives then
    return {held, ticket.n, tostring(serving), tostring(ticket.turn), tostring(ticket.col or ''), 0, tostring(now)}
  end
end
issued = issued + 1
local turn = math.ceil(now + (issued - serving) * 1000 / rate)
redis.call('HSET', room, 'issued', issued)
redis.call('HSET', tickets, ARGV[4], cjson.encode({n = issued, u = user, turn = turn}))
redis.call('HSET', users, user, ARGV[4])
for _, key in ipairs(KEYS) do
  redis.call('PEXPIRE', key, lifetime_ms)
end
return {ARGV[4], issued, tostring(serving), tostring(turn), '', 1, tostring(now)}
