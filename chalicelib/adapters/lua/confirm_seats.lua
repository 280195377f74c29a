--[[ Mark a booking's seats as booked once MySQL has it CONFIRMED. MySQL is the truth for confirmed seats, so
a seat held by this booking, or free (Redis lost the hold, e.g. after a restart), becomes booked by it. A
seat held by another booking is left alone: that booking will meet the database guard and be rejected.

KEYS[1]  seat hash of the performance
KEYS[2]  the performance's change counter
ARGV[1]  booking id
ARGV[2..] seat ids

Returns  the number of seats now booked by this booking
]]
local held, booked = 'H:' .. ARGV[1], 'B:' .. ARGV[1]
local changed, owned = 0, 0
for i = 2, #ARGV do
    local state = redis.call('HGET', KEYS[1], ARGV[i])
    if state == held or state == '0' then
        redis.call('HSET', KEYS[1], ARGV[i], booked)
        changed = changed + 1
        owned = owned + 1
    elseif state == booked then
        owned = owned + 1
    end
end
if changed > 0 then
    redis.call('INCR', KEYS[2])
end
return owned
