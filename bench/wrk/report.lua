-- wrk script for bench/run: GETs the URL given to wrk, or POSTs $BODY as JSON when it is
-- set; after the run prints "RESULT <requests/s> <p50 ms> <p99 ms> <errors>", errors
-- counting non-2xx/3xx answers as well as socket errors.
local body = os.getenv("BODY")
if body and body ~= "" then
  wrk.method = "POST"
  wrk.body = body
  wrk.headers["Content-Type"] = "application/json"
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("RESULT %.0f %.3f %.3f %d\n", summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    e.status + e.connect + e.read + e.write + e.timeout))
end
