--[[ Set the status (and reason) of a booking record, only if the record exists: an expired record must not
come back as a bare hash holding a status and nothing else.

KEYS[1]  the booking's record hash
ARGV[1]  status
ARGV[2]  reason ("" for none)

Returns  1 if the record was updated, 0 if there was none
]]
if redis.call('EXISTS', KEYS[1]) == 0 then
    return 0
end
redis.call('HSET', KEYS[1], 'status', ARGV[1], 'reason', ARGV[2])
return 1
