#!/usr/bin/env bash
# Time from a kintone webhook to its 200 under a burst: BURST (default 500) ADD_RECORD webhooks,
# each for a record of its own, sent at once over as many connections; every 200 means the
# record's message is committed. Prints wrk's latency percentiles and the messages stored.
# Usage: bench/kintone_burst.sh [burst=500] [sqlite|postgres]
set -euo pipefail
cd "$(dirname "$0")/.."
burst=${1:-500}
backend=${2:-sqlite}
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
[ -n "${SKIP_BUILD:-}" ] || cargo build --release --quiet
dir=$(mktemp -d)
cp "${CARGO_TARGET_DIR:-target}/release/tsunagi" "$dir/tsunagi"
port=18401
server=${TSUNAGI_BENCH_POSTGRES:-postgres://postgres@127.0.0.1:5432}
db=tsunagi_burst_$$_$RANDOM
case $backend in
  postgres) psql -q "$server/postgres" -c "CREATE DATABASE $db" >/dev/null; url="$server/$db" ;;
  *) url="sqlite://$dir/burst.db" ;;
esac
# Write-back goes nowhere (a closed local port): only the inbound path is measured.
cat >"$dir/tsunagi.toml" <<TOML
[[kintone]]
name = "bench"
base_url = "http://127.0.0.1:9"
app = 12
api_token = "bench-api-token"
inbound_token = "bench-inbound-token-0123456789"
phone_field = "電話番号"
template = "{{氏名}}様 ご予約を承りました"
status_field = "sms_status"
status_detail_field = "sms_status_detail"
reply_field = "sms_reply"
TOML
pid=
cleanup() {
  if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  [ "$backend" = postgres ] && psql -q "$server/postgres" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null || true
  rm -rf "$dir"
}
trap cleanup EXIT
TSUNAGI_CONFIG="$dir/tsunagi.toml" TSUNAGI_DATABASE_URL="$url" TSUNAGI_API_KEYS=bench-key-0123456789abcdef \
  TSUNAGI_LISTEN=127.0.0.1:$port RUST_LOG=error "$dir/tsunagi" serve >"$dir/out" 2>&1 &
pid=$!
for _ in $(seq 100); do curl -sf http://127.0.0.1:$port/healthz >/dev/null && break; sleep 0.1; done
curl -sf http://127.0.0.1:$port/healthz >/dev/null || { cat "$dir/out" >&2; exit 1; }
BURST=$burst THREADS=2 wrk -t2 -c"$burst" -d30s --latency -s bench/kintone_webhook.lua \
  "http://127.0.0.1:$port/v1/inbound/kintone/bench/bench-inbound-token-0123456789" >"$dir/wrk" 2>&1
grep -E 'Latency|50%|90%|99%|requests in|Non-2xx' "$dir/wrk"
stored=$(curl -s "http://127.0.0.1:$port/metrics" | awk '/^tsunagi_inbound_records_total/ && /accepted/ {s += $2} END {print s + 0}')
echo "webhooks stored: $stored (wrk stops once $burst answers are back; requests already on the wire are taken too)"
