-- GCRA for one key on the Redis server's clock, in microseconds: the same
-- steps as decide() in gcra.rs. An admitted request then takes up to
-- ARGV[4] tokens in all, from what the burst has spare. The calling
-- instance spends the extra ones itself (reserve.rs). Every value stays
-- below 2^53, where Lua numbers are exact integers.
--
-- KEYS[1]: the key's theoretical arrival time (TAT)
-- ARGV: emission interval (us), burst, cost, tokens requested (>= cost)
-- Returns {allowed (1/0), remaining, reset_after (us), retry_after (us, -1
-- for none), tokens granted (0 when refused)}
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local requested = tonumber(ARGV[4]) or cost
local window = burst * interval

local tat = tonumber(redis.call('GET', KEYS[1])) or now
if tat < now then
  tat = now
end
local new_tat = tat + cost * interval

if new_tat - now <= window then
  local granted = cost
  if requested > cost then
    local spare = math.floor((window - (new_tat - now)) / interval)
    local extra = math.min(requested - cost, spare)
    granted = cost + extra
    new_tat = new_tat + extra * interval
  end
  local ttl_ms = math.max(math.ceil((new_tat - now) / 1000), 1)
  redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX', ttl_ms)
  return {1, math.floor((window - (new_tat - now)) / interval), new_tat - now, -1, granted}
end

local retry = -1
if cost <= burst then
  retry = new_tat - window - now
end
local remaining = math.max(math.floor((window - (tat - now)) / interval), 0)
return {0, remaining, tat - now, retry, 0}
