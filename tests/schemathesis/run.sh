#!/usr/bin/env bash
# Property-based conformance of the live server to its OpenAPI document (schemathesis, every check).
# Usage: tests/schemathesis/run.sh [path-to-tsunagi-binary]   (default: target/debug/tsunagi)
# A fixed seed makes CI reproducible; change it (or drop it) to explore further.
# Installs schemathesis into target/schemathesis-venv on first use; bounded in examples and time.
set -euo pipefail
cd "$(dirname "$0")/../.."
binary=${1:-target/debug/tsunagi}
version=4.32.5
venv=target/schemathesis-venv
if [ "$("$venv/bin/st" --version 2>/dev/null)" != "st, version $version" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$version"
fi
dir=$(mktemp -d)
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
key=schemathesis-key-0123456789
# A Salesforce and a kintone connection, so the inbound routes are fuzzed past their path (schemathesis.toml
# gives its name and token).
cat >"$dir/tsunagi.toml" <<'TOML'
[[salesforce]]
name = "st"
organization_id = "00D5j000001aBcD"
inbound_token = "schemathesis-inbound-0123456789"
auth = "client_credentials"
client_id = "schemathesis"
client_secret = "schemathesis"
# Write-back goes nowhere: a closed local port, never a real org.
login_url = "http://127.0.0.1:9"

[[salesforce.mappings]]
sobject = "Contact"
phone_field = "MobilePhone"
template = "{{LastName}}様 ご予約は{{Appointment_Date__c}}です"
status_field = "SMS_Status__c"
status_detail_field = "SMS_Status_Detail__c"
reply_field = "SMS_Last_Reply__c"

[[kintone]]
name = "st"
base_url = "http://127.0.0.1:9"
app = 12
api_token = "schemathesis"
inbound_token = "schemathesis-inbound-0123456789"
phone_field = "phone"
template = "{{name}}様"
status_field = "sms_status"
status_detail_field = "sms_status_detail"
reply_field = "sms_reply"
TOML
trap 'kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; rm -rf "$dir"' EXIT
TSUNAGI_DATABASE_URL="sqlite://$dir/st.db" TSUNAGI_API_KEYS=$key TSUNAGI_LISTEN=127.0.0.1:$port \
  RUST_LOG=warn "$binary" serve --config "$dir/tsunagi.toml" >"$dir/server.log" 2>&1 &
pid=$!
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.1; done
status=0
SCHEMATHESIS_HOOKS=hooks PYTHONPATH=tests/schemathesis \
  "$venv/bin/st" --config-file tests/schemathesis/schemathesis.toml --no-color \
  run "http://127.0.0.1:$port/openapi.json" --generation-database none --seed 20261129 \
  -H "Authorization: Bearer $key" || status=$?
if [ "$status" -ne 0 ]; then
  echo "--- server log ---"; tail -50 "$dir/server.log"
fi
exit "$status"
