--[[ Take every requested seat for one booking, or none (all-or-nothing), atomically.

KEYS[1]  seat hash of the performance: field = seat id, value = "0" (free) | "H:<booking>" | "B:<booking>"
KEYS[2]  the booking's record hash (what GET /bookings/{id} reads while the booking is PENDING)
KEYS[3]  the performance's change counter (bumped on every seat change; lets readers detect change)
KEYS[4]  the performance's change log (a list: "<version> <seat>=<letter> ...", the newest last; what
         GET .../seats?since= answers from)
KEYS[5]  the performance's hold deadlines (a hash: booking id -> epoch milliseconds its hold runs out)
ARGV[1]  booking id
ARGV[2]  record TTL in seconds
ARGV[3]  how many versions the change log keeps
ARGV[4]  number of record field/value pairs that follow (n)
ARGV[5 .. 4+2n]  record fields and values
ARGV[5+2n]       now, epoch milliseconds (the caller's clock: the one clock every judge of a hold uses)
ARGV[6+2n]       this booking's hold deadline in epoch milliseconds, '' for a purchase
ARGV[7+2n ..]    seat ids, in the fixed (ascending) order

A seat held ("H:<booking>") by a hold whose deadline has passed is free: it is taken over here, at once,
whether or not the sweeper has released it yet (MySQL's journal insert expires that hold the same way).

Returns  {1}                      taken for this booking
         {2}                      this booking id already holds them (a retried call): nothing changed
         {0, seat, state, ...}    these seats are taken by someone else ("H:<booking>" / "B:<booking>",
                                  their holders): nothing changed
         {-1, seat, ...}          these seats are unknown in this performance: nothing changed
         {-2}                     the performance's seat hash is not loaded: load it, then call again
]]
if redis.call('EXISTS', KEYS[1]) == 0 then
    return {-2}
end
local booking = ARGV[1]
local pairs_count = tonumber(ARGV[4])
local now = tonumber(ARGV[5 + 2 * pairs_count])
local deadline = ARGV[6 + 2 * pairs_count]
local first_seat = 7 + 2 * pairs_count
local held = 'H:' .. booking

local function lapsed(state)
    if string.sub(state, 1, 2) ~= 'H:' then
        return false
    end
    local ends = redis.call('HGET', KEYS[5], string.sub(state, 3))
    return ends ~= false and tonumber(ends) <= now
end

if redis.call('EXISTS', KEYS[2]) == 1 then
    return {2}
end

local taken, unknown = {}, {}
for i = first_seat, #ARGV do
    local state = redis.call('HGET', KEYS[1], ARGV[i])
    if not state then
        unknown[#unknown + 1] = ARGV[i]
    elseif state ~= '0' and not lapsed(state) then
        taken[#taken + 1] = ARGV[i]
        taken[#taken + 1] = state
    end
end
if #unknown > 0 then
    table.insert(unknown, 1, -1)
    return unknown
end
if #taken > 0 then
    table.insert(taken, 1, 0)
    return taken
end

local changes = {}
for i = first_seat, #ARGV do
    redis.call('HSET', KEYS[1], ARGV[i], held)
    changes[#changes + 1] = ARGV[i] .. '=H'
end
for i = 5, 4 + 2 * pairs_count, 2 do
    redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1])
end
redis.call('EXPIRE', KEYS[2], tonumber(ARGV[2]))
if deadline ~= '' then
    redis.call('HSET', KEYS[5], booking, deadline)
end
-- The version and its change-log entry in one step: a reader of deltas never sees one without the other.
-- '%d': the version is past 2^31 and Lua's tostring would write it as 1.8e+15.
local version = redis.call('INCR', KEYS[3])
redis.call('RPUSH', KEYS[4], string.format('%d', version) .. ' ' .. table.concat(changes, ' '))
redis.call('LTRIM', KEYS[4], -tonumber(ARGV[3]), -1)
return {1}
