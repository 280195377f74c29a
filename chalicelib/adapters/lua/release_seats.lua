--[[ Give back the seats a booking holds (held or booked). Owner-checked: a seat that meanwhile belongs to
another booking, or is already free, is left alone, so a late or repeated release can never free someone
else's seat.

KEYS[1]  seat hash of the performance
KEYS[2]  the performance's change counter
ARGV[1]  booking id
ARGV[2..] seat ids

Returns  the number of seats released
]]
local held, booked = 'H:' .. ARGV[1], 'B:' .. ARGV[1]
local released = 0
for i = 2, #ARGV do
    local state = redis.call('HGET', KEYS[1], ARGV[i])
    if state == held or state == booked then
        redis.call('HSET', KEYS[1], ARGV[i], '0')
        released = released + 1
    end
end
if released > 0 then
    redis.call('INCR', KEYS[2])
end
return released
