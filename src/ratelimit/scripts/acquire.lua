-- Takes one slot of a concurrency limit. The slots are the members of a
-- sorted set scored by their expiry on the server's clock (ms), so the
-- slots of an instance that died free themselves.
--
-- KEYS[1]: the key's leases
-- ARGV: maximum in flight, lease length (ms), lease id
-- Returns 1 when the slot was taken, 0 when all were in use
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then
  return 0
end
local lease = tonumber(ARGV[2])
redis.call('ZADD', KEYS[1], now + lease, ARGV[3])
redis.call('PEXPIRE', KEYS[1], lease)
return 1
