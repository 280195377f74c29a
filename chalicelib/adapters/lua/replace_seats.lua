--[[ Compare-and-set of seat states: each seat changes only if it still shows the state the caller read. The
repairs (a rebuilt map catching up with MySQL, the reconcile job, a map realigned after a refusal of the
database guard) compute a seat's new state from an earlier read; a live booking, confirm or release that got
there in between is newer than that read and must win, so a seat whose state moved on is left as it is.

KEYS[1]  seat hash of the performance
KEYS[2]  the performance's change counter
ARGV     triples: seat id, expected state, new state ("0" free | "H:<booking>" | "B:<booking>")

Returns  the number of seats changed
]]
local changed = 0
for i = 1, #ARGV, 3 do
    if redis.call('HGET', KEYS[1], ARGV[i]) == ARGV[i + 1] then
        redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 2])
        changed = changed + 1
    end
end
if changed > 0 then
    redis.call('INCR', KEYS[2])
end
return changed
