#!/usr/bin/env bash
# End-to-end sandbox deliveries per second on PostgreSQL, with 1 and then 2 instances sharing one
# database, in the same run. Each round posts a backlog of messages all scheduled for the same
# moment, waits until every one is delivered, and divides the count by the time from that moment
# to the last `delivered` (claim, send, `sent`, receipt, `delivered`: every step in the store).
# Usage: bench/deliveries.sh [seconds-of-posting=3] [rounds=2]
set -euo pipefail
cd "$(dirname "$0")/.."
post_secs=${1:-3}
rounds=${2:-2}
server=${TSUNAGI_BENCH_POSTGRES:-postgres://postgres@127.0.0.1:5432}
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
command -v psql >/dev/null || { apt-get update -qq && apt-get install -y -qq postgresql-client >/dev/null; }
[ -n "${SKIP_BUILD:-}" ] || cargo build --release --quiet
dir=$(mktemp -d)
cp "${CARGO_TARGET_DIR:-target}/release/tsunagi" "$dir/tsunagi"
cat >"$dir/tsunagi.toml" <<TOML
[delivery]
rate_per_second = 100000
concurrency = 64
sandbox_latency_ms = 10
TOML
export TSUNAGI_BENCH_KEY=bench-key-0123456789abcdef
pids=()
db=
stop_all() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
  pids=()
  if [ -n "$db" ]; then psql -q "$server/postgres" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null || true; fi
  db=
}
trap 'stop_all; rm -rf "$dir"' EXIT
sql() { psql -qtA "$server/$db" -c "$1"; }

# One round with $1 instances: sets `count` (messages) and `rate` (deliveries per second).
round() {
  local n=$1 port
  db=tsunagi_bench_$$_$RANDOM
  psql -q "$server/postgres" -c "CREATE DATABASE $db" >/dev/null
  for i in $(seq "$n"); do
    port=$((18200 + i))
    if curl -s http://127.0.0.1:$port/healthz >/dev/null; then echo "port $port is taken" >&2; exit 1; fi
    TSUNAGI_CONFIG="$dir/tsunagi.toml" TSUNAGI_DATABASE_URL="$server/$db" \
      TSUNAGI_API_KEYS=$TSUNAGI_BENCH_KEY TSUNAGI_LISTEN=127.0.0.1:$port RUST_LOG=warn \
      "$dir/tsunagi" serve >"$dir/out$i" 2>&1 &
    pids+=($!)
  done
  for i in $(seq "$n"); do
    port=$((18200 + i))
    for _ in $(seq 100); do curl -sf http://127.0.0.1:$port/healthz >/dev/null && break; sleep 0.1; done
    curl -sf http://127.0.0.1:$port/healthz >/dev/null || { cat "$dir/out$i" >&2; exit 1; }
  done
  # The backlog falls due together, some seconds after the posting ends.
  local due_s=$(($(date +%s) + post_secs + 3))
  SEND_AT=$(date -u -d "@$due_s" +%Y-%m-%dT%H:%M:%SZ) \
    wrk -t2 -c32 -d"${post_secs}s" -s bench/post_scheduled.lua http://127.0.0.1:18201/v1/messages >/dev/null
  count=$(sql "SELECT count(*) FROM messages")
  while [ "$(sql "SELECT count(*) FROM messages WHERE status = 'delivered'")" -lt "$count" ]; do sleep 0.2; done
  rate=$(sql "SELECT round($count / ((max(at) - $due_s::bigint * 1000) / 1000.0))
              FROM message_events WHERE status = 'delivered'")
  stop_all
}

one=(); two=()
for r in $(seq "$rounds"); do
  round 1; one+=("$rate"); echo "round $r, 1 instance:  $count messages, $rate deliveries/s"
  round 2; two+=("$rate"); echo "round $r, 2 instances: $count messages, $rate deliveries/s"
done
python3 - "${one[*]}" "${two[*]}" <<'PY'
import statistics, sys
one = [float(x) for x in sys.argv[1].split()]
two = [float(x) for x in sys.argv[2].split()]
print(f"median 1 instance:  {statistics.median(one):.0f} deliveries/s")
print(f"median 2 instances: {statistics.median(two):.0f} deliveries/s")
print(f"ratio 2/1: {statistics.median(two) / statistics.median(one):.2f}")
PY
