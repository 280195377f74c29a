--[[ Take every requested seat for one booking, or none (all-or-nothing), atomically; or, for the best
available, choose the seats and take them in the same step.

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
ARGV[5 .. 4+2n]  record fields and values (the record's "seat_ids" field is set to the seats taken)
ARGV[5+2n]       now, epoch milliseconds (the caller's clock: the one clock every judge of a hold uses)
ARGV[6+2n]       this booking's hold deadline in epoch milliseconds, '' for a purchase
ARGV[7+2n]       best available: "<first seat id>:<rows>:<seats per row>:<count>" of the section; '' for
                 named seats
ARGV[8+2n ..]    named seat ids, in the fixed (ascending) order (none for the best available)

A seat held ("H:<booking>") by a hold whose deadline has passed is free: it is taken over here, at once,
whether or not the sweeper has released it yet (MySQL's journal insert expires that hold the same way).

The best available follows domain/best_available.py (its rules, in the same order; the integration tests
hold both to them): side by side in one row when any row has room, the placement that strands no single free
seat first, then the front row, then the leftmost; else the longest runs first (fewest rows).

Returns  {1}                      taken for this booking (named seats)
         {1, seat, ...}           the best available seats chosen and taken for this booking
         {2}                      this booking id already holds them (a retried call): nothing changed
         {0, seat, state, ...}    these seats are taken by someone else ("H:<booking>" / "B:<booking>",
                                  their holders): nothing changed; {0} the section has too few free seats
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
local best_available = ARGV[7 + 2 * pairs_count]
local first_named = 8 + 2 * pairs_count
local held = 'H:' .. booking

local function lapsed(state)
    if string.sub(state, 1, 2) ~= 'H:' then
        return false
    end
    local ends = redis.call('HGET', KEYS[5], string.sub(state, 3))
    return ends ~= false and tonumber(ends) <= now
end

local function is_free(state)
    return state == '0' or (state ~= false and lapsed(state))
end

if redis.call('EXISTS', KEYS[2]) == 1 then
    return {2}
end

-- The best available: runs of free seats row by row, then the choice.
local function choose(first_seat_id, rows, per_row, count)
    local runs, total = {}, 0
    for row = 1, rows do
        local base = first_seat_id + (row - 1) * per_row
        local ids = {}
        for n = 1, per_row do
            ids[n] = base + n - 1
        end
        local states = redis.call('HMGET', KEYS[1], unpack(ids))
        local start = nil
        for n = 1, per_row + 1 do
            local free = n <= per_row and is_free(states[n])
            if free and not start then
                start = n
            elseif not free and start then
                runs[#runs + 1] = {row, start, n - start}
                total = total + n - start
                start = nil
            end
        end
    end
    if total < count then
        return nil
    end
    local best = nil -- {strands, row, first number}
    for _, run in ipairs(runs) do
        local row, start, length = run[1], run[2], run[3]
        for offset = 0, length - count do
            local strands = (offset == 1 and 1 or 0) + (length - offset - count == 1 and 1 or 0)
            local candidate = {strands, row, start + offset}
            if not best or candidate[1] < best[1] or (candidate[1] == best[1] and (candidate[2] < best[2]
                    or (candidate[2] == best[2] and candidate[3] < best[3]))) then
                best = candidate
            end
        end
    end
    local chosen = {}
    if best then
        local base = first_seat_id + (best[2] - 1) * per_row
        for n = best[3], best[3] + count - 1 do
            chosen[#chosen + 1] = base + n - 1
        end
        return chosen
    end
    table.sort(runs, function(a, b)
        if a[3] ~= b[3] then return a[3] > b[3] end
        if a[1] ~= b[1] then return a[1] < b[1] end
        return a[2] < b[2]
    end)
    for _, run in ipairs(runs) do
        local wanted = count - #chosen
        if wanted <= 0 then
            break
        end
        local base = first_seat_id + (run[1] - 1) * per_row
        for n = run[2], run[2] + math.min(wanted, run[3]) - 1 do
            chosen[#chosen + 1] = base + n - 1
        end
    end
    table.sort(chosen)
    return chosen
end

local seats = {}
if best_available ~= '' then
    local first_seat_id, rows, per_row, count = string.match(best_available, '^(%d+):(%d+):(%d+):(%d+)$')
    seats = choose(tonumber(first_seat_id), tonumber(rows), tonumber(per_row), tonumber(count))
    if not seats then
        return {0}
    end
else
    for i = first_named, #ARGV do
        seats[#seats + 1] = ARGV[i]
    end
    local taken, unknown = {}, {}
    for _, seat in ipairs(seats) do
        local state = redis.call('HGET', KEYS[1], seat)
        if not state then
            unknown[#unknown + 1] = seat
        elseif not is_free(state) then
            taken[#taken + 1] = seat
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
end

local changes = {}
for _, seat in ipairs(seats) do
    redis.call('HSET', KEYS[1], seat, held)
    changes[#changes + 1] = seat .. '=H'
end
for i = 5, 4 + 2 * pairs_count, 2 do
    redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1])
end
if best_available ~= '' then
    redis.call('HSET', KEYS[2], 'seat_ids', table.concat(seats, ','))
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
if best_available ~= '' then
    table.insert(seats, 1, 1)
    return seats
end
return {1}
