-- wrk script for bench/otp_check.sh.
--   wrk ... -s bench/otp_check.lua URL -- IDS_FILE THREADS   checks codes of the verifications in IDS_FILE
--   wrk ... -s bench/otp_check.lua URL                        plain GET of URL (the healthz baseline)
-- Either way done() prints one RESULT line that the shell script parses, so both loads are
-- reported the same way and no unit-suffixed wrk output has to be converted.

local threads = {}

function setup(thread)
  -- 0-based: thread k starts at id k and strides by THREADS, so the threads never check the same id
  -- in the same pass and every id is checked once per pass.
  thread:set("offset", #threads)
  table.insert(threads, thread)
end

function init(args)
  statuses = {}
  reqs = nil
  if args[1] then
    local ids = {}
    for line in io.lines(args[1]) do
      if line ~= "" then ids[#ids + 1] = line end
    end
    assert(#ids > 0, "no verification ids in " .. args[1])
    local headers = {
      ["Content-Type"] = "application/json",
      ["Authorization"] = "Bearer " .. os.getenv("TSUNAGI_BENCH_KEY"),
    }
    -- A wrong code, so that every request is a full check: it counts an attempt and commits,
    -- unlike 404s or 429s, which are answered before the write. Seven digits against six-digit
    -- codes can never match (a six-digit guess would, for about one verification in 50 runs of
    -- 20000) and cost the same HMAC: the service has no length shortcut.
    local body = '{"code":"0000000"}'
    -- Requests are built once up front: wrk.format per request would be measured as server latency.
    reqs = {}
    for i, id in ipairs(ids) do
      reqs[i] = wrk.format("POST", "/v1/otp/" .. id .. "/check", headers, body)
    end
    step = tonumber(args[2] or "1")
    next_index = offset
  else
    plain = wrk.format()
  end
end

function request()
  if not reqs then return plain end
  local r = reqs[(next_index % #reqs) + 1]
  next_index = next_index + step
  return r
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency, requests)
  local counts = {}
  for _, thread in ipairs(threads) do
    for status, n in pairs(thread:get("statuses")) do
      counts[status] = (counts[status] or 0) + n
    end
  end
  local by_status = {}
  for status, n in pairs(counts) do by_status[#by_status + 1] = status .. ":" .. n end
  table.sort(by_status)
  local e = summary.errors
  io.write(string.format(
    "RESULT requests=%d rps=%.0f p50_us=%d p90_us=%d p99_us=%d max_us=%d socket_errors=%d statuses=%s\n",
    summary.requests, summary.requests / (summary.duration / 1e6),
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
    e.connect + e.read + e.write + e.timeout, table.concat(by_status, ",")))
end
