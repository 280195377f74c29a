--[[ Give back the seats a booking holds (held or booked). Owner-checked: a seat that meanwhile belongs to
another booking, or is already free, is left alone, so a late or repeated release can never free someone
else's seat.

KEYS[1]  seat hash of the performance
KEYS[2]  the performance's change counter
KEYS[3]  the performance's change log (a list: "<version> <seat>=<letter> ...", the newest last)
KEYS[4]  the performance's hold deadlines (booking id -> epoch milliseconds): the booking's is dropped
ARGV[1]  booking id
ARGV[2]  how many versions the change log keeps
ARGV[3..] seat ids

Returns  the number of seats released
]]
local held, booked = 'H:' .. ARGV[1], 'B:' .. ARGV[1]
local changes = {}
redis.call('HDEL', KEYS[4], ARGV[1])
for i = 3, #ARGV do
    local state = redis.call('HGET', KEYS[1], ARGV[i])
    if state == held or state == booked then
        redis.call('HSET', KEYS[1], ARGV[i], '0')
        changes[#changes + 1] = ARGV[i] .. '=A'
    end
end
if #changes > 0 then
    -- The version and its entry in the change log in one step: a reader of deltas never sees one without the
    -- other. '%d': the version is past 2^31 and Lua's tostring would write it as 1.8e+15.
    local version = redis.call('INCR', KEYS[2])
    redis.call('RPUSH', KEYS[3], string.format('%d', version) .. ' ' .. table.concat(changes, ' '))
    redis.call('LTRIM', KEYS[3], -tonumber(ARGV[2]), -1)
end
return #changes
