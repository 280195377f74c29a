--[[ Mark a booking's seats as booked once MySQL has it CONFIRMED, and its record CONFIRMED with them. MySQL is
the truth for confirmed seats, so a seat held by this booking, or free (Redis lost the hold, e.g. after a
restart), becomes booked by it. A seat held by another booking is left alone — unless ARGV[2] is '1'
(overwrite): the caller has just made this booking the seat's active holder in MySQL itself, so whatever Redis
still says (e.g. the booking a cancel has not yet released there, or a take on a map that had lost this
booking's hold) is stale. The late release is owner-checked and leaves the new holder alone.

A booking whose record says CANCELLED is never booked again: a cancel marks the record before it releases the
seats, so a confirm that comes late (a consumer that stored the booking just before the cancel) can neither
take back a seat the cancel has given away nor turn the record back to CONFIRMED.

KEYS[1]  seat hash of the performance
KEYS[2]  the performance's change counter
KEYS[3]  the booking's record
KEYS[4]  the performance's change log (a list: "<version> <seat>=<letter> ...", the newest last)
ARGV[1]  booking id
ARGV[2]  '1' to overwrite another booking's state, '0' not to
ARGV[3]  how many versions the change log keeps
ARGV[4..] seat ids

Returns  the number of seats now booked by this booking
]]
local held, booked = 'H:' .. ARGV[1], 'B:' .. ARGV[1]
local overwrite = ARGV[2] == '1'
local status = redis.call('HGET', KEYS[3], 'status')
if status == 'CANCELLED' then
    return 0
end
if status then
    redis.call('HSET', KEYS[3], 'status', 'CONFIRMED', 'reason', '')
end
local changes, owned = {}, 0
for i = 4, #ARGV do
    local state = redis.call('HGET', KEYS[1], ARGV[i])
    if state == booked then
        owned = owned + 1
    elseif state == held or state == '0' or (overwrite and state) then
        redis.call('HSET', KEYS[1], ARGV[i], booked)
        changes[#changes + 1] = ARGV[i] .. '=B'
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
