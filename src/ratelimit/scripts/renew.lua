-- Extends leases still held by a running request. A lease that already
-- expired (or was lost with the server's data) is not brought back.
--
-- KEYS[1]: the key's leases
-- ARGV: lease length (ms), then the lease ids
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local lease = tonumber(ARGV[1])
for i = 2, #ARGV do
  redis.call('ZADD', KEYS[1], 'XX', now + lease, ARGV[i])
end
redis.call('PEXPIRE', KEYS[1], lease)
return 1
