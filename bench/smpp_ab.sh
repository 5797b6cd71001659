#!/usr/bin/env bash
# Two builds of tsunagi side by side under the SMPP load of bench/smpp.sh, at the same time: each
# gets its own fresh SQLite file and its own wrk (half the connections), both send to one fake
# SMSC. Run one after the other, two builds are compared across whatever the machine's speed did
# between the runs (here it wanders by ±15%); run together, both see the same machine, so their
# ratio holds steady to a few percent (two copies of one build: 0.96–1.01).
# Prints, per round, each build's accepted req/s and CPU (utime+stime from /proc) per request, then
# the median ratio B/A of both. Swap A and B for a second run: the port each gets is not neutral.
# Usage: bench/smpp_ab.sh A-binary B-binary [seconds-per-round=8] [rounds=5]
# Env: CONNS (wrk connections per build, 32), BINDS (4), WINDOW (100).
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/smpp_config.sh
[ $# -ge 2 ] || { sed -n '2,10p' "$0" >&2; exit 2; }
a_bin=$1 b_bin=$2 secs=${3:-8} rounds=${4:-5}
conns=${CONNS:-32} binds=${BINDS:-4} window=${WINDOW:-100}
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
cargo build --release --quiet -p fake-smsc
dir=$(mktemp -d)
cp "$a_bin" "$dir/a-tsunagi"; cp "$b_bin" "$dir/b-tsunagi"
cp "${CARGO_TARGET_DIR:-target}/release/fake-smsc" "$dir/"
smsc_port=12775 a_port=18380 b_port=18381
for port in $smsc_port $a_port $b_port; do
  if (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null; then echo "port $port is taken" >&2; exit 1; fi
done
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$dir"
}
trap cleanup EXIT

"$dir/fake-smsc" --listen 127.0.0.1:$smsc_port --system-id bench --password bench123 \
  --receipts none >"$dir/smsc.out" 2>&1 &
pids+=($!)
smpp_config $smsc_port "$binds" "$window" >"$dir/tsunagi.toml"
export TSUNAGI_BENCH_KEY=bench-key-0123456789abcdef
start() {
  mkdir "$dir/$1"
  TSUNAGI_CONFIG="$dir/tsunagi.toml" TSUNAGI_DATABASE_URL="sqlite://$dir/$1/bench.db" \
    TSUNAGI_API_KEYS=$TSUNAGI_BENCH_KEY TSUNAGI_LISTEN=127.0.0.1:$2 RUST_LOG=warn \
    "$dir/$1-tsunagi" serve >"$dir/$1.out" 2>&1 &
}
start a $a_port; a_pid=$!; pids+=($a_pid)
start b $b_port; b_pid=$!; pids+=($b_pid)
for port in $a_port $b_port; do
  for _ in $(seq 100); do curl -sf http://127.0.0.1:$port/healthz >/dev/null && break; sleep 0.1; done
  curl -sf http://127.0.0.1:$port/healthz >/dev/null || { cat "$dir"/*.out >&2; exit 1; }
done
sleep 1

cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)
load() { wrk -t1 -c"$conns" -d"${secs}s" -s bench/post_message.lua "http://127.0.0.1:$1/v1/messages" >"$dir/$2.wrk" 2>&1; }
rates=(); cpus=()
echo "A: $a_bin  B: $b_bin; ${secs}s a round, wrk -t1 -c$conns each, $binds binds x window $window"
for r in $(seq "$rounds"); do
  a0=$(cpu $a_pid); b0=$(cpu $b_pid)
  load $a_port a & wa=$!
  load $b_port b & wb=$!
  wait $wa $wb
  a1=$(cpu $a_pid); b1=$(cpu $b_pid)
  line=$(python3 - "$(awk '/Requests\/sec/ {print $2}' "$dir/a.wrk")" "$(awk '/Requests\/sec/ {print $2}' "$dir/b.wrk")" \
    "$((a1 - a0))" "$((b1 - b0))" "$hz" "$secs" <<'PY'
import sys
ra, rb, ca, cb, hz, secs = (float(x) for x in sys.argv[1:7])
ua, ub = ca / hz / (ra * secs) * 1e6, cb / hz / (rb * secs) * 1e6
print(f"{rb / ra:.3f} {ub / ua:.3f} A {ra:.0f} req/s {ua:.1f} µs/req, B {rb:.0f} req/s {ub:.1f} µs/req")
PY
)
  read -r rate_ratio cpu_ratio rest <<<"$line"
  rates+=("$rate_ratio"); cpus+=("$cpu_ratio")
  echo "round $r: $rest, B/A req/s $rate_ratio, CPU a request $cpu_ratio"
  sleep 2
done
python3 - "${rates[*]}" "${cpus[*]}" <<'PY'
import statistics, sys
r, c = ([float(x) for x in arg.split()] for arg in sys.argv[1:3])
print(f"median B/A: req/s {statistics.median(r):.3f}, CPU a request {statistics.median(c):.3f}")
PY
