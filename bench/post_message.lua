-- wrk script: POST one small message per request with the bench API key.
wrk.method = "POST"
wrk.body = '{"to":"090-1234-5678","body":"Your appointment is confirmed for 12/1 10:00."}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("TSUNAGI_BENCH_KEY")

done = function(summary, latency, requests)
  io.write(string.format("errors: connect %d, read %d, write %d, timeout %d, non-2xx %d\n",
    summary.errors.connect, summary.errors.read, summary.errors.write,
    summary.errors.timeout, summary.errors.status))
end
