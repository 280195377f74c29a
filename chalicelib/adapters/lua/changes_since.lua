--[[ The seat changes of a performance's map after a version the reader holds, read in one atomic step with the
version they lead to (GET /performances/{id}/seats?since=).

Every script that changes a seat bumps the version and appends "<version> <seat>=<letter> ..." to the change
log in the same step, so the log's entries are the versions just below the current one, one each, the newest
last, and the changes after `since` are its last (current - since) entries. A rebuilt map starts an empty log
(the versions before it are gone), and the log keeps a bounded number of versions.

KEYS[1]  seat hash of the performance
KEYS[2]  the performance's change counter
KEYS[3]  the performance's change log
ARGV[1]  since: the version the reader holds

Returns  {-2}                         the performance's seat hash is not loaded
         {0, version}                 nothing changed: since is the current version
         {-1, version}                since is not in the log: older than what it keeps, newer than the
                                      map, or from before the map was rebuilt
         {1, version, entry, ...}     the log's entries after since, oldest first
The version is returned as the string Redis holds (a Lua number would be cut to an integer reply anyway, but
the string needs no care).
]]
if redis.call('EXISTS', KEYS[1]) == 0 then
    return {-2}
end
local version = redis.call('GET', KEYS[2]) or '0'
local behind = tonumber(version) - tonumber(ARGV[1])
if behind == 0 then
    return {0, version}
end
if behind < 0 or behind > redis.call('LLEN', KEYS[3]) then
    return {-1, version}
end
local entries = redis.call('LRANGE', KEYS[3], -behind, -1)
table.insert(entries, 1, version)
table.insert(entries, 1, 1)
return entries
