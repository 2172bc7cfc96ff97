-- wrk script for bench_http.py: POST one v2 JSON infer request in a loop and count
-- responses that are not 200. The path and body come from the environment:
--   WRK_PATH=/v2/models/sleep/infer WRK_BODY='{"inputs":[...]}' wrk -s v2_infer.lua URL
-- done() prints one line "WRK_JSON {...}" that bench_http.py parses.

wrk.method = "POST"
wrk.path = os.getenv("WRK_PATH") or "/v2/models/sleep/infer"
wrk.body = os.getenv("WRK_BODY") or ""
wrk.headers["Content-Type"] = "application/json"

non200 = 0
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function response(status, headers, body)
  if status ~= 200 then
    non200 = non200 + 1
  end
end

function done(summary, latency, requests)
  local bad = 0
  for _, thread in ipairs(threads) do
    bad = bad + thread:get("non200")
  end
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests":%d,"duration_us":%d,"non200":%d,"connect_errors":%d,' ..
    '"read_errors":%d,"write_errors":%d,"status_errors":%d,"timeouts":%d,' ..
    '"mean_us":%.1f,"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d}\n',
    summary.requests, summary.duration, bad, e.connect, e.read, e.write, e.status, e.timeout,
    latency.mean, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max))
end
