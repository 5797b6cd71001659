#!/usr/bin/env bash
# bench/ingest.sh on PostgreSQL: durable ingest (POST /v1/messages) as a ratio of GET /healthz on
# the same server in the same run, rounds alternating the two loads, medians reported. The server
# stores in a fresh database on the PostgreSQL at $TSUNAGI_BENCH_POSTGRES (default
# postgres://postgres@127.0.0.1:5432), created for the run and dropped at exit.
# With SCHEDULED=1 the messages are scheduled a day ahead, so the dispatcher delivers nothing
# during the load and the figure is acceptance alone (otherwise delivery shares the two cores).
# Usage: [SCHEDULED=1] bench/ingest_postgres.sh [connections=32] [seconds-per-load=5] [rounds=3]
set -euo pipefail
cd "$(dirname "$0")/.."
conns=${1:-32}
secs=${2:-5}
rounds=${3:-3}
server=${TSUNAGI_BENCH_POSTGRES:-postgres://postgres@127.0.0.1:5432}
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
command -v psql >/dev/null || { apt-get update -qq && apt-get install -y -qq postgresql-client >/dev/null; }
cargo build --release --quiet
dir=$(mktemp -d)
# A private copy: a build in another checkout sharing the target dir cannot swap it mid-run.
cp "${CARGO_TARGET_DIR:-target}/release/tsunagi" "$dir/tsunagi"
port=18081
db=tsunagi_bench_$$_$RANDOM
pid=
cleanup() {
  if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  psql -q "$server/postgres" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null || true
  rm -rf "$dir"
}
trap cleanup EXIT
psql -q "$server/postgres" -c "CREATE DATABASE $db" >/dev/null
export TSUNAGI_BENCH_KEY=bench-key-0123456789abcdef
TSUNAGI_DATABASE_URL="$server/$db" TSUNAGI_API_KEYS=$TSUNAGI_BENCH_KEY \
  TSUNAGI_LISTEN=127.0.0.1:$port RUST_LOG=warn "$dir/tsunagi" serve >"$dir/out" 2>&1 &
pid=$!
for _ in $(seq 100); do curl -sf http://127.0.0.1:$port/healthz >/dev/null && break; sleep 0.1; done
curl -sf http://127.0.0.1:$port/healthz >/dev/null || { cat "$dir/out" >&2; exit 1; }
rss() { awk '/VmRSS/ {printf "%.1f MB", $2 / 1024}' /proc/$pid/status; }
echo "database: $db; idle RSS: $(rss)"
load() { wrk -t2 -c"$conns" -d"${secs}s" "$@" >"$dir/wrk" 2>&1; grep -E 'Non-2xx|errors:|Socket errors' "$dir/wrk" | sed 's/^/  /' >&2 || true; awk '/Requests\/sec/ {print $2}' "$dir/wrk"; }
health=(); ingest=()
for r in $(seq "$rounds"); do
  health+=("$(load http://127.0.0.1:$port/healthz)")
  if [ "${SCHEDULED:-0}" = 1 ]; then
    ingest+=("$(SEND_AT=$(date -u -d tomorrow +%Y-%m-%dT%H:%M:%SZ) load -s bench/post_scheduled.lua http://127.0.0.1:$port/v1/messages)")
  else
    ingest+=("$(load -s bench/post_message.lua http://127.0.0.1:$port/v1/messages)")
  fi
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
echo "messages accepted: $(curl -s "http://127.0.0.1:$port/metrics" | awk '/^tsunagi_messages_accepted_total/ {print $2}')"
echo "messages stored:   $(psql -qtA "$server/$db" -c 'SELECT COUNT(*) FROM messages')"
