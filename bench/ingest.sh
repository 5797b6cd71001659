#!/usr/bin/env bash
# Durable ingest (POST /v1/messages) as a ratio of GET /healthz on the same server in the same run.
# Rounds alternate the two loads so that drift in the machine hits both; medians are reported.
# Usage: bench/ingest.sh [connections=32] [seconds-per-load=5] [rounds=3]
set -euo pipefail
cd "$(dirname "$0")/.."
conns=${1:-32}
secs=${2:-5}
rounds=${3:-3}
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
cargo build --release --quiet
dir=$(mktemp -d)
# A private copy: a build in another checkout sharing the target dir cannot swap it mid-run.
cp "${CARGO_TARGET_DIR:-target}/release/tsunagi" "$dir/tsunagi"
port=18080
trap 'kill $pid 2>/dev/null || true; rm -rf "$dir"' EXIT
export TSUNAGI_BENCH_KEY=bench-key-0123456789abcdef
TSUNAGI_DATABASE_URL="sqlite://$dir/bench.db" TSUNAGI_API_KEYS=$TSUNAGI_BENCH_KEY \
  TSUNAGI_LISTEN=127.0.0.1:$port RUST_LOG=warn "$dir/tsunagi" serve >"$dir/out" 2>&1 &
pid=$!
for _ in $(seq 100); do curl -sf http://127.0.0.1:$port/healthz >/dev/null && break; sleep 0.1; done
rss() { awk '/VmRSS/ {printf "%.1f MB", $2 / 1024}' /proc/$pid/status; }
echo "idle RSS: $(rss)"
load() { wrk -t2 -c"$conns" -d"${secs}s" "$@" >"$dir/wrk" 2>&1; grep -E 'Non-2xx|errors:|Socket errors' "$dir/wrk" | sed 's/^/  /' >&2 || true; awk '/Requests\/sec/ {print $2}' "$dir/wrk"; }
health=(); ingest=()
for r in $(seq "$rounds"); do
  health+=("$(load http://127.0.0.1:$port/healthz)")
  ingest+=("$(load -s bench/post_message.lua http://127.0.0.1:$port/v1/messages)")
  echo "round $r: healthz ${health[-1]} req/s, ingest ${ingest[-1]} req/s"
done
python3 - "${health[*]}" "${ingest[*]}" <<'PY'
import statistics, sys
h = [float(x) for x in sys.argv[1].split()]
i = [float(x) for x in sys.argv[2].split()]
ratios = [b / a for a, b in zip(h, i)]
print(f"median healthz: {statistics.median(h):.0f} req/s")
print(f"median ingest:  {statistics.median(i):.0f} req/s")
print(f"median ratio:   {statistics.median(ratios):.3f} (per round: {', '.join(f'{r:.3f}' for r in ratios)})")
PY
echo "RSS after load: $(rss)"
echo "messages stored: $(curl -s "http://127.0.0.1:$port/metrics" | awk '/^tsunagi_messages_accepted_total/ {print $2}')"
