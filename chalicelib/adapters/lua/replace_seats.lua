--[[ Compare-and-set of seat states: each seat changes only if it still shows the state the caller read. The
repairs (a rebuilt map catching up with MySQL, the reconcile job, a map realigned after a refusal of the
database guard) compute a seat's new state from an earlier read; a live booking, confirm or release that got
there in between is newer than that read and must win, so a seat whose state moved on is left as it is.

KEYS[1]  seat hash of the performance
KEYS[2]  the performance's change counter
KEYS[3]  the performance's change log (a list: "<version> <seat>=<letter> ...", the newest last)
ARGV[1]  how many versions the change log keeps
ARGV[2..] triples: seat id, expected state, new state ("0" free | "H:<booking>" | "B:<booking>")

Returns  the number of seats changed
]]
local changes = {}
for i = 2, #ARGV, 3 do
    if redis.call('HGET', KEYS[1], ARGV[i]) == ARGV[i + 1] then
        local new = ARGV[i + 2]
        redis.call('HSET', KEYS[1], ARGV[i], new)
        -- The seat's letter in the log: A free, else the state's own first letter (H or B).
        changes[#changes + 1] = ARGV[i] .. '=' .. (new == '0' and 'A' or string.sub(new, 1, 1))
    end
end
if #changes > 0 then
    -- The version and its change-log entry in one step (see release_seats.lua for the '%d').
    local version = redis.call('INCR', KEYS[2])
    redis.call('RPUSH', KEYS[3], string.format('%d', version) .. ' ' .. table.concat(changes, ' '))
    redis.call('LTRIM', KEYS[3], -tonumber(ARGV[1]), -1)
end
return #changes
