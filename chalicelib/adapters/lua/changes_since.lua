--[[ The seat changes of a performance's map after a version the reader holds, up to the performance's current
frame, read in one atomic step with the version they lead to (GET /performances/{id}/seats?since=).

Every script that changes a seat bumps the version and appends "<version> <seat>=<letter> ..." to the change
log in the same step, so the log's entries are the versions just below the current one, one each, the newest
last. A rebuilt map starts an empty log (the versions before it are gone), and the log keeps a bounded number
of versions.

The frame: readers are answered up to one shared version per render interval (ARGV[2] ms; 0: none), the
version the map was last rendered at or the version a reader of deltas met first in the interval. So readers
who polled in one interval hold the same version and send the same `since` next time: a shared cache (the
CDN) and each process answer them with one answer, instead of one per reader and per change.

KEYS[1]  seat hash of the performance
KEYS[2]  the performance's change counter
KEYS[3]  the performance's change log
KEYS[4]  the performance's frame: the version served in this render interval (a TTL of the interval)
ARGV[1]  since: the version the reader holds
ARGV[2]  the render interval in ms (0: no frame, answer up to the current version)

Returns  {-2}                         the performance's seat hash is not loaded
         {0, version}                 nothing to tell up to the frame (version: the one the reader holds)
         {-1, version}                since is not in the log: older than what it keeps, newer than the
                                      map, or from before the map was rebuilt
         {1, version, entry, ...}     the log's entries after since up to version (the frame), oldest first
Versions travel as the strings Redis holds.
]]
if redis.call('EXISTS', KEYS[1]) == 0 then
    return {-2}
end
local current = redis.call('GET', KEYS[2]) or '0'
local since = tonumber(ARGV[1])
if since > tonumber(current) then
    return {-1, current}
end
local target = current
if tonumber(ARGV[2]) > 0 then
    local frame = redis.call('GET', KEYS[4])
    if frame and tonumber(frame) <= tonumber(current) then
        target = frame
    else
        redis.call('SET', KEYS[4], current, 'PX', ARGV[2])
    end
end
if since >= tonumber(target) then
    return {0, ARGV[1]}
end
local behind, ahead = tonumber(current) - since, tonumber(current) - tonumber(target)
if behind > redis.call('LLEN', KEYS[3]) then
    return {-1, current}
end
local entries = redis.call('LRANGE', KEYS[3], -behind, -1 - ahead)
table.insert(entries, 1, target)
table.insert(entries, 1, 1)
return entries
