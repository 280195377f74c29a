--[[ Put a performance's seat hash, built under a scratch key, in place — unless a map is there already — and
start its version and change log, in one step: nobody reads the new hash under the old version, and a
loader that lost the race to another changes nothing (no version bump without a change-log entry).

A counter Redis lost restarts from the clock (ARGV[1]), so versions keep growing and never repeat one that a
process may still have a rendered map cached under. The change log restarts empty: the versions before the
rebuild are gone for delta readers (they read the whole map again).

KEYS[1]  the scratch hash
KEYS[2]  seat hash of the performance
KEYS[3]  the performance's change counter
KEYS[4]  the performance's change log
ARGV[1]  the counter's start if Redis has none: the clock in ms x 1,000

Returns  1 if this call published the map, 0 if one was there
]]
redis.call('SET', KEYS[3], ARGV[1], 'NX')
if redis.call('RENAMENX', KEYS[1], KEYS[2]) == 0 then
    return 0
end
redis.call('INCR', KEYS[3])
redis.call('DEL', KEYS[4])
return 1
