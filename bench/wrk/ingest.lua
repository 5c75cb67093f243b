-- wrk script: POST batches of AURUM_BATCH new customer records (unique keys) to
-- /api/v1/customer/records with a source system's token (AURUM_TOKEN); AURUM_RUN prefixes
-- the keys so that every run creates records.
local token = os.getenv("AURUM_TOKEN")
local batch = tonumber(os.getenv("AURUM_BATCH") or "1000")
local run = os.getenv("AURUM_RUN") or "run"
local given = { "Anna", "Ben", "Clara", "David", "Emma", "Felix", "Grace", "Henry", "Ines", "Jonas" }
local family = { "Smith", "Jones", "Taylor", "Brown", "Wilson", "Evans", "Thomas", "Roberts" }
local counter = 0
local threads = 0

function setup(thread)
  threads = threads + 1
  thread:set("tid", threads)
end

function request()
  counter = counter + 1
  local parts = {}
  for i = 1, batch do
    local key = string.format("%s-%d-%d-%d", run, tid, counter, i)
    local g, f = given[(i % #given) + 1], family[((counter + i) % #family) + 1]
    parts[i] = string.format(
      '{"source_key": "%s", "given_name": "%s", "family_name": "%s", ' ..
      '"email": "%s.%s.%s@example.com", "date_of_birth": "19%02d-%02d-%02d", "country": "GB"}',
      key, g, f, g:lower(), f:lower(), key, 50 + i % 50, 1 + i % 12, 1 + i % 28)
  end
  local body = '{"records": [' .. table.concat(parts, ", ") .. ']}'
  return wrk.format("POST", "/api/v1/customer/records",
    { ["Authorization"] = "Bearer " .. token, ["Content-Type"] = "application/json" }, body)
end

function done(summary, latency, requests)
  io.write(string.format(
    '{"requests": %d, "duration_us": %d, "non_2xx": %d, "socket_errors": %d, ' ..
    '"p50_us": %d, "p95_us": %d, "p99_us": %d, "max_us": %d}\n',
    summary.requests, summary.duration, summary.errors.status,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    latency:percentile(50), latency:percentile(95), latency:percentile(99), latency.max))
end
