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

# Read whole before matching: `grep -q` stopping early would fail `pip show` under pipefail.
installed="$("$venv/bin/pip" show schemathesis 2>/dev/null || true)"
if [ ! -x "$venv/bin/schemathesis" ] || ! grep -qx "Version: $SCHEMATHESIS_VERSION" <<<"$installed"; then
  echo "schemathesis: installing $SCHEMATHESIS_VERSION into $venv" >&2
  # --clear: a venv moved or copied from elsewhere has scripts that point at the old place.
  python3 -m venv --clear "$venv"
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
# The outbox's deliveries are logged at info: the invitation tokens below are read from there.
export RUST_LOG="${RUST_LOG:-warn},iocloud::outbox=info"
# With the Stripe stand-in running, card payments are on and fuzzed too; without, their
# routes answer rail_not_configured.
if [ -n "${IOCLOUD_TEST_STRIPE_URL:-}" ]; then
  export IOCLOUD_STRIPE_SECRET_KEY=sk_test_fuzz IOCLOUD_STRIPE_WEBHOOK_SECRET=whsec_fuzz
  export IOCLOUD_STRIPE_API_BASE="$IOCLOUD_TEST_STRIPE_URL"
fi
json() { python3 -c "import json,sys; print(json.load(sys.stdin)$1)"; }
# With the Solana peer running, deposits on chain are on and fuzzed too: a treasury and mints
# of this run's own. Without, their routes answer rail_not_configured.
if [ -n "${IOCLOUD_TEST_SOLANA_URL:-}" ]; then
  peer="$IOCLOUD_TEST_SOLANA_URL"
  control() { curl -fsS -X POST "$peer/_control/$1" -H 'content-type: application/json' -d "$2"; }
  control keypair '{}' >"$work/treasury-answer.json"
  json '["secretKey"]' <"$work/treasury-answer.json" >"$work/treasury.json"
  treasury="$(json '["pubkey"]' <"$work/treasury-answer.json")"
  mint_iosd="$(control create_mint '{"decimals":6}' | json '["mint"]')"
  mint_usdc="$(control create_mint '{"decimals":6}' | json '["mint"]')"
  mint_io="$(control create_mint '{"decimals":9}' | json '["mint"]')"
  control advance '{"slots":2}' >/dev/null
  export IOCLOUD_SOLANA_RPC_URL="$peer" IOCLOUD_SOLANA_TREASURY_KEYPAIR="$work/treasury.json"
  export IOCLOUD_SOLANA_MINT_IOSD="$mint_iosd" IOCLOUD_SOLANA_MINT_USDC="$mint_usdc" IOCLOUD_SOLANA_MINT_IO="$mint_io"
  export IOCLOUD_SOLANA_WATCH_INTERVAL_SECS=1
fi
"$bin" serve >"$work/server.log" 2>&1 &
server_pid=$!
base="http://127.0.0.1:$port"
for _ in $(seq 1 100); do
  curl -fsS "$base/healthz" >/dev/null 2>&1 && break
  sleep 0.2
done
curl -fsS "$base/healthz" >/dev/null || { cat "$work/server.log" >&2; exit 1; }

email="fuzz@example.com"
password="correct horse battery staple"
org_id="$(curl -fsS -X POST "$base/v1/auth/signup" -H 'content-type: application/json' \
  -d "{\"email\":\"$email\",\"password\":\"$password\",\"name\":\"Fuzz\",\"org_name\":\"Fuzzing\"}" | json '["organization"]["id"]')"
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

# Real resources for the operations that take an id, so that they reach more than their 404.
# `call METHOD PATH BODY [TOKEN]` answers the body of a 2xx (the operator's session by default).
call() {
  curl -fsS -X "$1" "$base$2" -H 'content-type: application/json' \
    -H "authorization: Bearer ${4:-$access}" ${3:+-d "$3"}
}
credit() { call POST /v1/admin/credits "{\"org_id\":\"$org_id\",\"amount\":\"$1\",\"currency\":\"$2\",\"reason\":\"fuzzing\"}"; }
credit 100000 IO >/dev/null
credit 100000.00 USD >/dev/null
# A small grant of its own for the corrections to reverse.
correction_tx="$(credit 1.00 USD | json '["transaction_id"]')"
# One stake covers the device; another is the unstake and withdraw operations' to end.
call POST /v1/stake '{"amount":"16000"}' >/dev/null
stake_id="$(call POST /v1/stake '{"amount":"100"}' | json '["id"]')"
# The device's agent connects, solves its challenge and reports its GPUs free: a placeable
# device, so that quotes and clusters can be made.
call POST "/agent/v1/devices/$device_id/hello" '{"agent_version":"1.4.2"}' "$device_token" >"$work/hello.json"
answer="$(python3 -c '
import hashlib, json, sys
c = json.load(sys.stdin)["challenge"]
nonce, n = c["nonce"], 0
while int.from_bytes(hashlib.sha256(f"{nonce}:{n}".encode()).digest(), "big") >> (256 - c["difficulty"]):
    n += 1
print(json.dumps({"nonce": nonce, "answer": n}))' <"$work/hello.json")"
call POST "/agent/v1/devices/$device_id/challenge" "$answer" "$device_token" >/dev/null
call POST "/agent/v1/devices/$device_id/heartbeat" \
  '{"free_gpus":8,"utilization_pct":0,"temperature_c":40,"agent_version":"1.4.2"}' "$device_token" >/dev/null
quote_id="$(call POST /v1/quotes '{"gpu_count":1}' | json '["id"]')"
price_quote_id="$(call POST /v1/price-quotes '{"amount_usd":"10.00","currency":"IO"}' | json '["id"]')"
cluster="$(call POST /v1/clusters \
  '{"name":"fuzz-ray","kind":"ray","gpu_model":"h100-sxm","gpu_count":1,"duration_hours":1,"billing_currency":"USD"}')"
cluster_id="$(echo "$cluster" | json '["id"]')"
hold_id="$(echo "$cluster" | json '["hold_id"]')"
# Credentials are a Kubernetes cluster's.
kube_id="$(call POST /v1/clusters \
  '{"name":"fuzz-kube","kind":"kubernetes","gpu_model":"h100-sxm","gpu_count":1,"duration_hours":1,"billing_currency":"USD"}' | json '["id"]')"
# Invitations travel by email, which the outbox logs: the token of the latest one to an address.
invitation_token() {
  for _ in $(seq 1 100); do
    local t
    t="$(grep -F "$1" "$work/server.log" | grep -o 'ioinv_[A-Za-z0-9_]*' | tail -1 || true)"
    [ -n "$t" ] && { echo "$t"; return; }
    sleep 0.1
  done
  echo "schemathesis: no invitation email to $1" >&2; return 1
}
signup() {
  call POST /v1/auth/signup "{\"email\":\"$1\",\"password\":\"$password\",\"name\":\"$2\",\"org_name\":\"$2\"}"
}
# A second device for the operations that change or retire a device or rotate its token, so the
# first one keeps serving the agent routes and the clusters.
spare_device_id="$(curl -fsS -X POST "$base/v1/devices" -H 'content-type: application/json' \
  -H "authorization: Bearer $access" \
  -d '{"name":"fuzz-spare","gpu_model":"h100-sxm","gpu_count":8,"cpu_cores":64,"ram_gib":512,"disk_gib":2000,"region":"eu-central","country":"DE","location":{"lat":50.11,"lon":8.68},"bandwidth_mbps":{"up":1000,"down":1000},"price_per_gpu_hour":"2.10"}' \
  | json '["id"]')"
# A second member, invited and accepted, for the member operations.
member="$(signup member@example.com Member)"
member_id="$(echo "$member" | json '["user"]["id"]')"
call POST /v1/invitations '{"email":"member@example.com","role":"member"}' >/dev/null
call POST /v1/invitations/accept "{\"token\":\"$(invitation_token member@example.com)\"}" \
  "$(echo "$member" | json '["access_token"]')" >/dev/null
# A pending invitation for the invitation operations, and another for accept to take, as its invitee.
invitation_id="$(call POST /v1/invitations '{"email":"pending@example.com","role":"viewer"}' | json '["id"]')"
invitee_access="$(signup invitee@example.com Invitee | json '["access_token"]')"
call POST /v1/invitations '{"email":"invitee@example.com","role":"member"}' >/dev/null
invitee_token="$(invitation_token invitee@example.com)"
# A deposit intent, and a deposit nobody's reference matched for the operators' assignment.
deposit_id="dep_none"
chain_deposit_id="cdp_none"
if [ -n "${IOCLOUD_TEST_SOLANA_URL:-}" ]; then
  deposit_id="$(call POST /v1/billing/deposits '{"currency":"IOSD","amount":"5"}' | json '["id"]')"
  payer="$(control keypair '{}' | json '["pubkey"]')"
  control mint_to "{\"mint\":\"$mint_iosd\",\"owner\":\"$payer\",\"amount\":\"5000000\"}" >/dev/null
  control transfer "{\"from\":\"$payer\",\"mint\":\"$mint_iosd\",\"to\":\"$treasury\",\"amount\":\"5000000\"}" >/dev/null
  control advance '{"slots":40}' >/dev/null
  for _ in $(seq 1 100); do
    chain_deposit_id="$(call GET /v1/admin/chain-deposits | json '["items"][0]["id"]' 2>/dev/null || true)"
    [ -n "$chain_deposit_id" ] && break
    sleep 0.2
  done
  [ -n "$chain_deposit_id" ] || { echo "schemathesis: the watcher saw no deposit" >&2; exit 1; }
fi

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

# The first block an operation matches decides each option, so every block names its operations
# exactly and none overlaps another.
[[operations]]
include-path = ["/v1/devices/{id}/maintenance", "/v1/admin/devices/{id}/suspension"]
parameters = { "path.id" = "$device_id" }

[[operations]]
include-path = ["/v1/devices/{id}", "/v1/devices/{id}/token"]
parameters = { "path.id" = "$spare_device_id" }

# A login that can succeed (the per-account limit is raised for the run).
[[operations]]
include-path = "/v1/auth/login"
parameters = { "body.email" = "$email", "body.password" = "$password" }

[[operations]]
include-path = "/v1/clusters/{id}/credentials"
parameters = { "path.id" = "$kube_id" }

[[operations]]
include-path = ["/v1/clusters/{id}", "/v1/clusters/{id}/events", "/v1/clusters/{id}/extend"]
parameters = { "path.id" = "$cluster_id" }

[[operations]]
include-path = "/v1/holds/{id}"
parameters = { "path.id" = "$hold_id" }

[[operations]]
include-path = "/v1/members/{user_id}"
parameters = { "path.user_id" = "$member_id" }

[[operations]]
include-path = "/v1/invitations/{id}"
parameters = { "path.id" = "$invitation_id" }

[[operations]]
include-path = "/v1/invitations/accept"
headers = { Authorization = "Bearer $invitee_access" }
parameters = { "body.token" = "$invitee_token" }

[[operations]]
include-path = "/v1/quotes/{id}"
parameters = { "path.id" = "$quote_id" }

[[operations]]
include-path = "/v1/price-quotes/{id}"
parameters = { "path.id" = "$price_quote_id" }

[[operations]]
include-path = ["/v1/stake/{id}/unstake", "/v1/stake/{id}/withdraw"]
parameters = { "path.id" = "$stake_id" }

[[operations]]
include-path = "/v1/admin/corrections"
parameters = { "body.transaction_id" = "$correction_tx" }

[[operations]]
include-path = "/v1/admin/orgs/{id}/quota"
parameters = { "path.id" = "$org_id" }

[[operations]]
include-path = ["/v1/billing/deposits/{id}", "/v1/billing/deposits/{id}/qr.svg"]
parameters = { "path.id" = "$deposit_id" }

[[operations]]
include-path = "/v1/admin/chain-deposits/{id}/assign"
parameters = { "path.id" = "$chain_deposit_id", "body.org_id" = "$org_id" }

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
