-- wrk script: GET /api/v1/customer/golden/<id> with a source system's token.
-- AURUM_TOKEN: the bearer token; AURUM_IDS: a file of golden ids, one a line.
local token = os.getenv("AURUM_TOKEN")
local ids = {}
for line in io.lines(os.getenv("AURUM_IDS")) do ids[#ids + 1] = line end
local headers = { ["Authorization"] = "Bearer " .. token }
local n = 0

function init(args)
  math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16) % 1000)
end

function request()
  n = n + 1
  local id = ids[math.random(#ids)]
  return wrk.format("GET", "/api/v1/customer/golden/" .. id, headers)
end

function done(summary, latency, requests)
  io.write(string.format(
    '{"requests": %d, "duration_us": %d, "non_2xx": %d, "socket_errors": %d, ' ..
    '"p50_us": %d, "p95_us": %d, "p99_us": %d, "max_us": %d}\n',
    summary.requests, summary.duration, summary.errors.status,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    latency:percentile(50), latency:percentile(95), latency:percentile(99), latency.max))
end
