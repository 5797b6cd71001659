#!/usr/bin/env bash
# Resident memory of a release server: idle, right after an ingest burst, and once the queue has
# drained and the server has idled. RSS is split into anonymous (heap, stacks) and file-backed pages.
# The dispatcher may send 20k/s here (the default is 500/s) so that a burst's queue drains in a
# bounded time; everything else is the default configuration.
# Usage: bench/memory.sh [connections=32] [burst-seconds=10] [idle-seconds=15]
set -euo pipefail
cd "$(dirname "$0")/.."
conns=${1:-32}
secs=${2:-10}
idle=${3:-15}
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
cargo build --release --quiet
dir=$(mktemp -d)
# A private copy: a build in another checkout sharing the target dir cannot swap it mid-run.
cp "${CARGO_TARGET_DIR:-target}/release/tsunagi" "$dir/tsunagi"
port=18081
trap 'kill $pid 2>/dev/null || true; rm -rf "$dir"' EXIT
printf '[delivery]\nrate_per_second = 20000\nconcurrency = 256\n' >"$dir/tsunagi.toml"
export TSUNAGI_BENCH_KEY=bench-key-0123456789abcdef
TSUNAGI_DATABASE_URL="sqlite://$dir/bench.db" TSUNAGI_API_KEYS=$TSUNAGI_BENCH_KEY \
  TSUNAGI_LISTEN=127.0.0.1:$port RUST_LOG=warn "$dir/tsunagi" serve --config "$dir/tsunagi.toml" >"$dir/out" 2>&1 &
pid=$!
for _ in $(seq 100); do curl -sf http://127.0.0.1:$port/healthz >/dev/null && break; sleep 0.1; done
rss() {
  awk '/^(VmRSS|RssAnon|RssFile|RssShmem):/ {v[$1] = $2 / 1024}
       END {printf "%.1f MB (anon %.1f, file %.1f, shmem %.1f); threads ", v["VmRSS:"], v["RssAnon:"], v["RssFile:"], v["RssShmem:"]}' \
    /proc/$pid/status
  ls /proc/$pid/task | wc -l
}
metric() { curl -s "http://127.0.0.1:$port/metrics" | awk -v m="$1" '$1 == m {print $2}'; }
echo "idle RSS:              $(rss)"
wrk -t2 -c"$conns" -d"${secs}s" -s bench/post_message.lua http://127.0.0.1:$port/v1/messages >"$dir/wrk" 2>&1
grep -E 'Non-2xx|errors:|Socket errors' "$dir/wrk" | sed 's/^/  /' >&2 || true
echo "RSS after ${secs}s burst:  $(rss)"
echo "  $(awk '/Requests\/sec/ {print $2}' "$dir/wrk") req/s, $(metric tsunagi_messages_accepted_total) messages queued"
start=$SECONDS
until [ "$(metric tsunagi_queue_depth)" = 0 ]; do
  ((SECONDS - start < 600)) || { echo "queue not drained in 600 s" >&2; exit 1; }
  sleep 1
done
echo "  drained in $((SECONDS - start)) s"
sleep "$idle"
echo "RSS ${idle}s after drain: $(rss)"
