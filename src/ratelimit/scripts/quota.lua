-- One request against a calendar-window quota. A denied request is not
-- counted.
--
-- KEYS[1]: the count of the key's current window
-- ARGV: limit, the window's end plus a grace period (Unix seconds)
-- Returns {allowed (1/0), requests counted in the window}
local used = tonumber(redis.call('GET', KEYS[1])) or 0
if used >= tonumber(ARGV[1]) then
  return {0, used}
end
used = redis.call('INCR', KEYS[1])
if used == 1 then
  redis.call('EXPIREAT', KEYS[1], ARGV[2])
end
return {1, used}
