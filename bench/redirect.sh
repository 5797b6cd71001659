#!/usr/bin/env bash
# Short-link redirects (GET /s/{code}, each one a counted click from a handset's browser) as a
# ratio of GET /healthz on the same server in the same run. Rounds alternate the two loads so
# that drift in the machine hits both; medians are reported.
# Usage: bench/redirect.sh [connections=32] [seconds-per-load=5] [rounds=3] [database_url]
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
port=18081
trap 'kill $pid 2>/dev/null || true; rm -rf "$dir"' EXIT
key=bench-key-0123456789abcdef
TSUNAGI_DATABASE_URL="${4:-sqlite://$dir/bench.db}" TSUNAGI_API_KEYS=$key \
  TSUNAGI_LISTEN=127.0.0.1:$port RUST_LOG=warn "$dir/tsunagi" serve >"$dir/out" 2>&1 &
pid=$!
base=http://127.0.0.1:$port
for _ in $(seq 100); do curl -sf $base/healthz >/dev/null && break; sleep 0.1; done
id=$(curl -sf -H "Authorization: Bearer $key" -H 'content-type: application/json' \
  -d '{"to":"090-1234-5678","body":"ご予約はこちら https://example.jp/r?id=1","shorten_links":true}' \
  $base/v1/messages | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
code=""
for _ in $(seq 100); do
  code=$(curl -sf -H "Authorization: Bearer $key" "$base/v1/sandbox/inbox?to=09012345678" |
    python3 -c 'import json,sys; e=[x for x in json.load(sys.stdin) if x["message_id"]==sys.argv[1]]; print(e[0]["body"].rsplit("/s/",1)[1].split("?")[0] if e else "")' "$id")
  [ -n "$code" ] && break; sleep 0.1
done
code=${code%% *}
echo "short link: $base/s/$code -> $(curl -s -o /dev/null -w '%{http_code} %{redirect_url}' -A 'Mozilla/5.0 (iPhone)' $base/s/$code)"
load() { wrk -t2 -c"$conns" -d"${secs}s" "$@" >"$dir/wrk" 2>&1; grep -E 'errors:|Socket errors' "$dir/wrk" | sed 's/^/  /' >&2 || true; awk '/Requests\/sec/ {print $2}' "$dir/wrk"; }
health=(); redirect=()
for r in $(seq "$rounds"); do
  health+=("$(load $base/healthz)")
  redirect+=("$(load -H "User-Agent: ${AGENT:-Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) Mobile Safari}" $base/s/$code)")
  echo "round $r: healthz ${health[-1]} req/s, redirect ${redirect[-1]} req/s"
done
python3 - "${health[*]}" "${redirect[*]}" <<'PY'
import statistics, sys
h = [float(x) for x in sys.argv[1].split()]
r = [float(x) for x in sys.argv[2].split()]
ratios = [b / a for a, b in zip(h, r)]
print(f"median healthz:  {statistics.median(h):.0f} req/s")
print(f"median redirect: {statistics.median(r):.0f} req/s")
print(f"median ratio:    {statistics.median(ratios):.3f} (per round: {', '.join(f'{x:.3f}' for x in ratios)})")
PY
sleep 1
echo "clicks stored: $(curl -s -H "Authorization: Bearer $key" $base/v1/messages/$id | python3 -c 'import json,sys; print(json.load(sys.stdin)["clicks"])')"
echo "clicks lost: $(curl -s $base/metrics | awk '/^tsunagi_link_clicks_lost_total/ {print $2}')"
