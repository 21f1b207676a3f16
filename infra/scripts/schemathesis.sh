#!/usr/bin/env bash
# Checks the OpenAPI document against the server with schemathesis, a fuzzer nobody here wrote:
# every operation is called with generated valid and invalid requests, and every answer must be
# documented (status, content type, body schema), invalid requests refused, and no answer a 5xx.
#
#   infra/scripts/schemathesis.sh [path/to/iocloud]   (default: target/debug/iocloud)
#
# Starts its own server on loopback with a scratch SQLite database and the rate limits raised,
# as a platform operator holding an admin API key (so operator routes are reached too). Installs
# the pinned schemathesis into a virtualenv (IOCLOUD_SCHEMATHESIS_VENV, default
# target/schemathesis-venv) the first time. Exits non-zero on any failure.
set -euo pipefail
cd "$(dirname "$0")/../.."

SCHEMATHESIS_VERSION=4.32.5
bin="${1:-target/debug/iocloud}"
venv="${IOCLOUD_SCHEMATHESIS_VENV:-target/schemathesis-venv}"
examples="${IOCLOUD_SCHEMATHESIS_EXAMPLES:-25}"
port="${IOCLOUD_SCHEMATHESIS_PORT:-18181}"

if [ ! -x "$venv/bin/schemathesis" ] || ! "$venv/bin/pip" show schemathesis 2>/dev/null | grep -qx "Version: $SCHEMATHESIS_VERSION"; then
  echo "schemathesis: installing $SCHEMATHESIS_VERSION into $venv" >&2
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
fi

work="$(mktemp -d)"
server_pid=""
cleanup() {
  if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

export DATABASE_URL="sqlite://$work/fuzz.db"
export IOCLOUD_LISTEN="127.0.0.1:$port"
export IOCLOUD_RATE_LIMIT_PER_IP=10000000 IOCLOUD_RATE_LIMIT_PER_KEY=10000000
export IOCLOUD_RATE_LIMIT_PER_DEVICE=10000000 IOCLOUD_LOGIN_MAX_ATTEMPTS=10000000
export IOCLOUD_RECONCILE_INTERVAL_SECS=1 IOCLOUD_ACCRUAL_INTERVAL_SECS=0
export RUST_LOG="${RUST_LOG:-warn}"
"$bin" serve >"$work/server.log" 2>&1 &
server_pid=$!
base="http://127.0.0.1:$port"
for _ in $(seq 1 100); do
  curl -fsS "$base/healthz" >/dev/null 2>&1 && break
  sleep 0.2
done
curl -fsS "$base/healthz" >/dev/null || { cat "$work/server.log" >&2; exit 1; }

json() { python3 -c "import json,sys; print(json.load(sys.stdin)$1)"; }
email="fuzz@example.com"
password="correct horse battery staple"
curl -fsS -X POST "$base/v1/auth/signup" -H 'content-type: application/json' \
  -d "{\"email\":\"$email\",\"password\":\"$password\",\"name\":\"Fuzz\",\"org_name\":\"Fuzzing\"}" >/dev/null
"$bin" admin grant-operator "$email" >/dev/null
access="$(curl -fsS -X POST "$base/v1/auth/login" -H 'content-type: application/json' \
  -d "{\"email\":\"$email\",\"password\":\"$password\"}" | json '["access_token"]')"
# The operator's session reaches every route; logout gets an API key instead (a generated call
# must not end the session the others use). The agent routes get a registered device's token,
# with its id as their path's `id`.
key="$(curl -fsS -X POST "$base/v1/api-keys" -H 'content-type: application/json' \
  -H "authorization: Bearer $access" \
  -d '{"name":"schemathesis","scopes":["read","write","admin"]}' | json '["secret"]')"
device="$(curl -fsS -X POST "$base/v1/devices" -H 'content-type: application/json' \
  -H "authorization: Bearer $access" \
  -d '{"name":"fuzz-rig","gpu_model":"h100-sxm","gpu_count":8,"cpu_cores":64,"ram_gib":512,"disk_gib":2000,"region":"eu-central","country":"DE","location":{"lat":50.11,"lon":8.68},"bandwidth_mbps":{"up":1000,"down":1000},"price_per_gpu_hour":"2.10"}')"
device_id="$(echo "$device" | json '["id"]')"
device_token="$(echo "$device" | json '["token"]')"

cat >"$work/schemathesis.toml" <<TOML
seed = 1
hooks = "schemathesis_hooks"
workers = 2
headers = { Authorization = "Bearer $access" }

[phases]
examples.enabled = true
coverage.enabled = true
fuzzing.enabled = true
stateful.enabled = false

[generation]
max-examples = $examples

[checks]
enabled = false
not_a_server_error.enabled = true
status_code_conformance.enabled = true
content_type_conformance.enabled = true
response_schema_conformance.enabled = true
negative_data_rejection.enabled = true

[[operations]]
include-path = "/v1/auth/logout"
headers = { Authorization = "Bearer $key" }

# The assignments long poll waits as long as asked when there is nothing to do: ask for no wait.
[[operations]]
include-path-regex = "/assignments\$"
headers = { Authorization = "Bearer $device_token" }
parameters = { "path.id" = "$device_id", "query.wait_secs" = 0 }
request-timeout = 40

[[operations]]
include-path-regex = "^/agent/"
headers = { Authorization = "Bearer $device_token" }
parameters = { "path.id" = "$device_id" }
TOML

status=0
PYTHONPATH="infra/scripts${PYTHONPATH:+:$PYTHONPATH}" "$venv/bin/schemathesis" --config-file "$work/schemathesis.toml" --no-color run "$base/openapi.json" \
  >"$work/report.txt" 2>&1 || status=$?
cat "$work/report.txt"
if grep -q "panicked\|ERROR" "$work/server.log"; then
  echo "schemathesis: the server logged errors:" >&2
  grep -n "panicked\|ERROR" "$work/server.log" | head -20 >&2
  status=1
fi
# Every operation must have been reached: as many tested as the document has.
selected="$(sed -nE 's/^ *Selected: ([0-9]+)\/([0-9]+).*/\2/p' "$work/report.txt")"
tested="$(sed -nE 's/^ *Tested: ([0-9]+).*/\1/p' "$work/report.txt")"
if [ -z "$selected" ] || [ "$selected" != "$tested" ]; then
  echo "schemathesis: ${tested:-no} operations tested of ${selected:-an unknown number}" >&2
  status=1
fi
exit "$status"
