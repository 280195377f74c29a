--[[ Mark a booking's seats as booked once MySQL has it CONFIRMED (held, with its deadline, once MySQL has a
hold HELD), and its record CONFIRMED (HELD) with them. MySQL is
the truth for confirmed seats, so a seat held by this booking, or free (Redis lost the hold, e.g. after a
restart), becomes booked by it. A seat held by another booking is left alone — unless ARGV[2] is '1'
(overwrite): the caller has just made this booking the seat's active holder in MySQL itself, so whatever Redis
still says (e.g. the booking a cancel has not yet released there, or a take on a map that had lost this
booking's hold) is stale. The late release is owner-checked and leaves the new holder alone.

A booking whose record says CANCELLED (or EXPIRED) is never booked again: a cancel marks the record before it releases the
seats, so a confirm that comes late (a consumer that stored the booking just before the cancel) can neither
take back a seat the cancel has given away nor turn the record back to CONFIRMED.

KEYS[1]  seat hash of the performance
KEYS[2]  the performance's change counter
KEYS[3]  the booking's record
KEYS[4]  the performance's change log (a list: "<version> <seat>=<letter> ...", the newest last)
KEYS[5]  the performance's hold deadlines (booking id -> epoch milliseconds)
ARGV[1]  booking id
ARGV[2]  '1' to overwrite another booking's state, '0' not to
ARGV[3]  how many versions the change log keeps
ARGV[4]  the hold's deadline in epoch milliseconds when MySQL has the booking HELD (its seats stay held,
         "H:<booking>", until then), '' when it has it CONFIRMED (booked)
ARGV[5..] seat ids

Returns  the number of seats now held or booked by this booking
]]
local held, booked = 'H:' .. ARGV[1], 'B:' .. ARGV[1]
local overwrite = ARGV[2] == '1'
local deadline = ARGV[4]
local status = redis.call('HGET', KEYS[3], 'status')
if status == 'CANCELLED' or status == 'EXPIRED' then
    return 0
end
local wanted, letter = booked, '=B'
if deadline ~= '' then
    wanted, letter = held, '=H'
    redis.call('HSET', KEYS[5], ARGV[1], deadline)
else
    redis.call('HDEL', KEYS[5], ARGV[1])
end
if status then
    redis.call('HSET', KEYS[3], 'status', deadline ~= '' and 'HELD' or 'CONFIRMED', 'reason', '')
end
local changes, owned = {}, 0
for i = 5, #ARGV do
    local state = redis.call('HGET', KEYS[1], ARGV[i])
    if state == wanted then
        owned = owned + 1
    elseif state == held or state == booked or state == '0' or (overwrite and state) then
        redis.call('HSET', KEYS[1], ARGV[i], wanted)
        changes[#changes + 1] = ARGV[i] .. letter
        owned = owned + 1
    end
end
if #changes > 0 then
    -- The version and its change-log entry in one step (see release_seats.lua for the '%d').
    local version = redis.call('INCR', KEYS[2])
    redis.call('RPUSH', KEYS[4], string.format('%d', version) .. ' ' .. table.concat(changes, ' '))
    redis.call('LTRIM', KEYS[4], -tonumber(ARGV[3]), -1)
end
return owned
