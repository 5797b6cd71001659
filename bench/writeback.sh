#!/usr/bin/env bash
# Write-back's pace against the fake org: time from a message's delivery to its Salesforce record
# showing it, at rest (lone messages 10 s apart) and under load (1,000 a minute), and the calls
# the load took per 1,000 messages. About 5 minutes.
# Usage: bench/writeback.sh   (BENCH_LONE=18 BENCH_LOAD=2000 by default)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --release --quiet --test api writeback_figures_at_rest_and_under_load -- \
    --ignored --nocapture 2>&1 | grep -E "^(at rest|under load)|panicked|FAILED"
