#!/usr/bin/env bash
# End-to-end SMPP throughput, POST /v1/messages to submit_sm at a local fake SMSC, against Kannel
# (HTTP sendsms to the same SMSC) in the same run, with the fake SMSC's own ceiling measured first.
# Each round runs three loads in turn against one fake SMSC:
#   1. fake SMSC alone: smpp-load (tools/fake-smsc) binds and submits as fast as its windows allow;
#   2. tsunagi: wrk POSTs /v1/messages (fresh SQLite, synchronous=FULL, provider smpp);
#   3. Kannel: wrk GETs /cgi-bin/sendsms on smsbox (bearerbox with its default file store).
# The figure for each is the median of the fake SMSC's per-second submit counts during the load
# (first and last second dropped); after each load the queue is left to drain before the next.
# CPU per message (utime+stime from /proc, all of the system's processes listed) is printed too.
# Receipts are off at the fake SMSC (Kannel asks for none by default), so both do the same work.
# Usage: bench/smpp.sh [seconds-per-load=10] [rounds=3]
# Env: CONNS (wrk connections, 64), BINDS (4), WINDOW (100), SKIP_BUILD=1.
# bench/smpp_shapes.sh runs it for a carrier's window (1 bind x 50) and an aggregator's (4 x 100).
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/smpp_config.sh
secs=${1:-10}
rounds=${2:-3}
conns=${CONNS:-64}
binds=${BINDS:-4}
window=${WINDOW:-100}
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
command -v bearerbox >/dev/null || { apt-get update -qq && apt-get install -y -qq kannel >/dev/null; }
[ -n "${SKIP_BUILD:-}" ] || cargo build --release --quiet -p tsunagi -p fake-smsc
dir=$(mktemp -d)
# Private copies: a build in another checkout sharing the target dir cannot swap them mid-run.
for bin in tsunagi fake-smsc smpp-load; do cp "${CARGO_TARGET_DIR:-target}/release/$bin" "$dir/"; done
smsc_port=12775 tsunagi_port=18380 admin_port=13900 box_port=13901 sendsms_port=13913
for port in $smsc_port $tsunagi_port $admin_port $box_port $sendsms_port; do
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
smsc_pid=$!; pids+=($smsc_pid)

smpp_config $smsc_port "$binds" "$window" >"$dir/tsunagi.toml"
export TSUNAGI_BENCH_KEY=bench-key-0123456789abcdef
TSUNAGI_CONFIG="$dir/tsunagi.toml" TSUNAGI_DATABASE_URL="sqlite://$dir/bench.db" \
  TSUNAGI_API_KEYS=$TSUNAGI_BENCH_KEY TSUNAGI_LISTEN=127.0.0.1:$tsunagi_port RUST_LOG=warn \
  "$dir/tsunagi" serve >"$dir/tsunagi.out" 2>&1 &
tsunagi_pid=$!; pids+=($tsunagi_pid)

# Kannel as packaged: only the ports, the account and the window are set; the store is the
# default type (file) at a location in the temp dir, never synced; logging at errors only.
cat >"$dir/kannel.conf" <<CONF
group = core
admin-port = $admin_port
admin-password = bench
status-password = bench
admin-allow-ip = "127.0.0.1"
smsbox-port = $box_port
box-allow-ip = "127.0.0.1"
log-level = 4
log-file = "$dir/bearerbox.log"
store-location = "$dir/kannel.store"

group = smsc
smsc = smpp
smsc-id = fake
host = 127.0.0.1
port = $smsc_port
transceiver-mode = true
smsc-username = bench
smsc-password = bench123
system-type = ""
instances = $binds
max-pending-submits = $window

group = smsbox
bearerbox-host = 127.0.0.1
bearerbox-port = $box_port
sendsms-port = $sendsms_port
log-level = 4
log-file = "$dir/smsbox.log"

group = sendsms-user
username = bench
password = bench
CONF
bearerbox -v 4 "$dir/kannel.conf" >"$dir/bearerbox.out" 2>&1 &
bearerbox_pid=$!; pids+=($bearerbox_pid)
sleep 1
smsbox -v 4 "$dir/kannel.conf" >"$dir/smsbox.out" 2>&1 &
smsbox_pid=$!; pids+=($smsbox_pid)

for _ in $(seq 100); do curl -sf http://127.0.0.1:$tsunagi_port/healthz >/dev/null && break; sleep 0.1; done
curl -sf http://127.0.0.1:$tsunagi_port/healthz >/dev/null || { cat "$dir/tsunagi.out" >&2; exit 1; }
online() { curl -s "http://127.0.0.1:$admin_port/status.txt?password=bench" | grep -c 'online' || true; }
for _ in $(seq 100); do [ "$(online)" -ge "$binds" ] && break; sleep 0.1; done
[ "$(online)" -ge "$binds" ] || { echo "Kannel did not bind:" >&2; tail -5 "$dir"/bearerbox.* >&2; exit 1; }
for _ in $(seq 100); do curl -s http://127.0.0.1:$sendsms_port/ >/dev/null && break; sleep 0.1; done

# CPU seconds (user + system) of the given processes so far.
cpu() { local t=0 p; for p in "$@"; do t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat"))); done; echo "$t"; }
hz=$(getconf CLK_TCK)
submitted() { awk '/submits\/s/ {gsub(/\(/, "", $3); t = $3} END {print t + 0}' "$dir/smsc.out"; }
lines() { wc -l <"$dir/smsc.out"; }
# Median per-second submit count between two line numbers of the fake's output, ends dropped.
steady() {
  sed -n "$(($1 + 1)),$2p" "$dir/smsc.out" | awk '/submits\/s/ {print $1}' | sed '1d;$d' |
    sort -n | awk '{a[NR] = $1} END {if (NR == 0) print 0; else if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2}'
}
# Wait until the fake has seen no submit for 2 s (the queue behind it is empty).
drain() {
  local last now quiet=0
  last=$(submitted)
  while [ $quiet -lt 4 ]; do
    sleep 0.5; now=$(submitted)
    if [ "$now" = "$last" ]; then quiet=$((quiet + 1)); else quiet=0; last=$now; fi
  done
}
# wrk's figure, with errors and non-2xx shown.
load() {
  wrk -t2 -c"$conns" -d"${secs}s" "$@" >"$dir/wrk" 2>&1
  grep -E 'Non-2xx|Socket errors|errors: .*[1-9]' "$dir/wrk" | sed 's/^/    /' >&2 || true
  awk '/Requests\/sec/ {print $2}' "$dir/wrk"
}
# One load: runs "$@" with the fake's output and CPU bracketed; sets rate, accepted, per_msg.
measure() {
  local procs=$1; shift
  local l0 s0 c0 l1 s1 c1
  drain
  l0=$(lines); s0=$(submitted); c0=$(cpu $procs)
  accepted=$("$@")
  l1=$(lines)
  drain
  s1=$(submitted); c1=$(cpu $procs)
  rate=$(steady "$l0" "$l1")
  count=$((s1 - s0))
  per_msg=$(python3 -c "print(f'{($c1 - $c0) / $hz / max($count, 1) * 1e6:.0f}')")
}
alone_load() { "$dir/smpp-load" --connect 127.0.0.1:$smsc_port --system-id bench --password bench123 \
  --binds "$binds" --window "$window" --seconds "$secs" | awk '{print $1}'; }
tsunagi_load() { load -s bench/post_message.lua http://127.0.0.1:$tsunagi_port/v1/messages; }
kannel_load() {
  load "http://127.0.0.1:$sendsms_port/cgi-bin/sendsms?username=bench&password=bench&from=12345&to=09012345678&text=Your+appointment+is+confirmed+for+12%2F1+10%3A00."
}

echo "load: ${secs}s per load, $rounds rounds, wrk -t2 -c$conns, $binds binds x window $window; uptime:$(uptime | sed 's/.*load average/ load average/')"
alone=(); tsu=(); kan=(); tsu_acc=(); kan_acc=(); tsu_cpu=(); kan_cpu=()
for r in $(seq "$rounds"); do
  measure "$smsc_pid" alone_load; alone+=("$rate")
  echo "round $r: fake SMSC alone $rate submit_sm/s (smpp-load: $accepted/s; fake CPU $per_msg µs/msg)"
  measure "$tsunagi_pid" tsunagi_load; tsu+=("$rate"); tsu_acc+=("$accepted"); tsu_cpu+=("$per_msg")
  echo "round $r: tsunagi $rate submit_sm/s, $accepted req/s accepted, $count submitted in all (tsunagi CPU $per_msg µs/msg)"
  measure "$bearerbox_pid $smsbox_pid" kannel_load; kan+=("$rate"); kan_acc+=("$accepted"); kan_cpu+=("$per_msg")
  echo "round $r: Kannel  $rate submit_sm/s, $accepted req/s accepted, $count submitted in all (bearerbox+smsbox CPU $per_msg µs/msg)"
done
python3 - "${alone[*]}" "${tsu[*]}" "${kan[*]}" "${tsu_acc[*]}" "${kan_acc[*]}" "${tsu_cpu[*]}" "${kan_cpu[*]}" <<'PY'
import statistics, sys
a, t, k, ta, ka, tc, kc = ([float(x) for x in arg.split()] for arg in sys.argv[1:8])
m = statistics.median
print(f"median fake SMSC alone: {m(a):.0f} submit_sm/s")
print(f"median tsunagi:         {m(t):.0f} submit_sm/s ({m(ta):.0f} req/s accepted)")
print(f"median Kannel:          {m(k):.0f} submit_sm/s ({m(ka):.0f} req/s accepted)")
ratios = [y / x if x else 0 for x, y in zip(k, t)]
print(f"ratio tsunagi/Kannel:   {m(t) / max(m(k), 1):.2f} (per round: {', '.join(f'{r:.2f}' for r in ratios)})")
print(f"headroom fake/tsunagi:  {m(a) / max(m(t), 1):.2f}, fake/Kannel: {m(a) / max(m(k), 1):.2f}")
print(f"median CPU a message:   tsunagi {m(tc):.0f} µs, Kannel {m(kc):.0f} µs")
PY
curl -s "http://127.0.0.1:$tsunagi_port/metrics" >"$dir/metrics"
# Stored counts the requests still in flight when wrk stopped, which wrk's own count leaves out.
stored=$(python3 -c "import sqlite3, sys; print(sqlite3.connect(f'file:{sys.argv[1]}?mode=ro', uri=True).execute('SELECT count(*) FROM messages').fetchone()[0])" "$dir/bench.db")
echo "tsunagi messages stored: $stored, submit_sm by result: $(awk '/^tsunagi_smpp_submits_total/ {printf "%s ", $0}' "$dir/metrics")"
echo "submits at the fake SMSC in all: $(submitted); uptime:$(uptime | sed 's/.*load average/ load average/')"
