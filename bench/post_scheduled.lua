-- wrk script: POST one small message per request, scheduled for $SEND_AT, with the bench API key.
wrk.method = "POST"
wrk.body = '{"to":"090-1234-5678","body":"Your appointment is confirmed for 12/1 10:00.","send_at":"'
  .. os.getenv("SEND_AT") .. '"}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("TSUNAGI_BENCH_KEY")
