#!/usr/bin/env bash
# bench/smpp.sh for both window shapes in one run: a carrier's single bind with a window of 50
# (Kannel's max-pending-submits = 50) and an aggregator's 4 binds x 100; each shape's summary,
# tsunagi/Kannel ratio and CPU a message, then the 1 x 50 CPU a message over the 4 x 100 one.
# Usage: bench/smpp_shapes.sh [seconds-per-load=10] [rounds=3]
set -euo pipefail
cd "$(dirname "$0")/.."
[ -n "${SKIP_BUILD:-}" ] || cargo build --release --quiet -p tsunagi -p fake-smsc
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
for shape in 1x50 4x100; do
  echo "== $shape"
  BINDS=${shape%x*} WINDOW=${shape#*x} SKIP_BUILD=1 bench/smpp.sh "$@" | tee "$out/$shape"
done
cpu() { awk '/median CPU a message/ {print $6}' "$out/$1"; }
python3 -c "import sys; a, b = float(sys.argv[1]), float(sys.argv[2]); print(f'CPU a message, 1 x 50 over 4 x 100: {a / b:.2f}')" \
  "$(cpu 1x50)" "$(cpu 4x100)"
