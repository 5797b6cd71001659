#!/usr/bin/env bash
# Durable ingest (POST /v1/messages) as a ratio of GET /healthz on the same server, same run.
# Usage: bench/ingest.sh [connections] [seconds]
set -euo pipefail
cd "$(dirname "$0")/.."
conns=${1:-32}
secs=${2:-10}
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
cargo build --release --quiet
dir=$(mktemp -d)
trap 'kill $pid 2>/dev/null || true; rm -rf "$dir"' EXIT
export TSUNAGI_BENCH_KEY=bench-key-0123456789abcdef
TSUNAGI_DATABASE_URL="sqlite://$dir/bench.db" TSUNAGI_API_KEYS=$TSUNAGI_BENCH_KEY \
  TSUNAGI_LISTEN=127.0.0.1:18080 RUST_LOG=warn target/release/tsunagi serve >"$dir/out" 2>&1 &
pid=$!
for _ in $(seq 50); do curl -sf http://127.0.0.1:18080/healthz >/dev/null && break; sleep 0.1; done
rss() { awk '/VmRSS/ {print $2 / 1024 " MB"}' /proc/$pid/status; }
echo "idle RSS: $(rss)"
run() { wrk -t2 -c"$conns" -d"${secs}s" "$@" | tee /dev/stderr | awk '/Requests\/sec/ {print $2}'; }
health=$(run http://127.0.0.1:18080/healthz 2>&1 | tail -1)
ingest=$(run -s bench/post_message.lua http://127.0.0.1:18080/v1/messages 2>&1 | tail -1)
echo "healthz: $health req/s"
echo "ingest:  $ingest req/s"
echo "ratio:   $(python3 -c "print(round($ingest / $health, 3))")"
echo "RSS after load: $(rss)"
