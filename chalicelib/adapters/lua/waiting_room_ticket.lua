-- A ticket's state, read by its user; the first read on or after its turn collects it (the admission is
-- issued from then on), unless the collect window has passed: then it has lapsed, as it has once its
-- admission expired.
--   KEYS  room, tickets
--   ARGV  now (ms), rate (per second), ticket id, user, collect window (ms), an admission's lifetime (ms)
-- -> nil (no such ticket, or another user's)
--    | {number, serving, turn (ms), collected (ms or ''), lapsed 0/1, the room's now (ms)}
local room, tickets = KEYS[1], KEYS[2]
local rate, user, collect_ms = tonumber(ARGV[2]), ARGV[4], tonumber(ARGV[5])
local admission_ms = tonumber(ARGV[6])
local raw = redis.call('HGET', tickets, ARGV[3])
if not raw then
  return nil
end
local ticket = cjson.decode(raw)
if ticket.u ~= user then
  return nil
end
local _, serving, now = advance(room, tonumber(ARGV[1]), rate)
if ticket.col and now >= ticket.col + admission_ms then
  return {ticket.n, tostring(serving), tostring(ticket.turn), tostring(ticket.col), 1, tostring(now)}
end
if not ticket.col and now >= ticket.turn then
  if now > ticket.turn + collect_ms then
    return {ticket.n, tostring(serving), tostring(ticket.turn), '', 1, tostring(now)}
  end
  ticket.col = now
  redis.call('HSET', tickets, ARGV[3], cjson.encode(ticket))
end
return {ticket.n, tostring(serving), tostring(ticket.turn), tostring(ticket.col or ''), 0, tostring(now)}
