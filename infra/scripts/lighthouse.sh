#!/usr/bin/env bash
# Lighthouse 12.2.3 scores (performance, accessibility, best practices) of the console's pages,
# signed in, in Debian's Chromium, at Lighthouse's mobile and desktop settings.
#
#   infra/scripts/lighthouse.sh [path/to/iocloud]   (default: target/release/iocloud)
#
# Starts its own `iocloud serve --demo` on loopback with a scratch SQLite database (the demo's
# simulated fleet gives the pages something to show), signs a customer up, rents a cluster,
# then runs Lighthouse on each page with the session's cookies. Installs the pinned Lighthouse
# into infra/lighthouse/node_modules the first time. Prints a table; exits non-zero when a
# score is under IOCLOUD_LIGHTHOUSE_MIN (default 95).
set -euo pipefail
cd "$(dirname "$0")/../.."

bin="${1:-target/release/iocloud}"
port="${IOCLOUD_LIGHTHOUSE_PORT:-18282}"
min="${IOCLOUD_LIGHTHOUSE_MIN:-95}"
chrome="${IOCLOUD_CHROMIUM:-/usr/bin/chromium}"
base="http://127.0.0.1:$port"

if [ ! -x infra/lighthouse/node_modules/.bin/lighthouse ]; then
  (cd infra/lighthouse && npm install --no-audit --no-fund --loglevel=error)
fi

work="$(mktemp -d)"
server_pid=""
cleanup() {
  if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

DATABASE_URL="sqlite://$work/lh.db?mode=rwc" IOCLOUD_LISTEN="127.0.0.1:$port" \
  IOCLOUD_SIGNUP_CREDIT_USD=1000 "$bin" serve --demo > "$work/server.log" 2>&1 &
server_pid=$!
for _ in $(seq 1 120); do
  curl -fsS "$base/readyz" > /dev/null 2>&1 && break
  sleep 0.5
done
curl -fsS "$base/readyz" > /dev/null

session="$(curl -fsS -H 'content-type: application/json' \
  -d '{"email":"lighthouse@example.com","password":"lighthouse password","name":"Lighthouse","org_name":"Lighthouse"}' \
  "$base/v1/auth/signup")"
access="$(python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])' <<< "$session")"
refresh="$(python3 -c 'import json,sys; print(json.load(sys.stdin)["refresh_token"])' <<< "$session")"
# The demo's agents need a moment to list their machines.
cluster=""
for _ in $(seq 1 60); do
  made="$(curl -sS -H "authorization: Bearer $access" -H 'content-type: application/json' \
    -d '{"name":"lighthouse","kind":"ray","gpu_class":"datacenter","gpu_count":8,"gpus_per_node":8,"duration_hours":2}' \
    "$base/v1/clusters")"
  cluster="$(python3 -c 'import json,sys; print(json.load(sys.stdin).get("id",""))' <<< "$made" 2>/dev/null || true)"
  [ -n "$cluster" ] && break
  sleep 1
done
[ -n "$cluster" ] || { echo "lighthouse: no cluster could be made: $made" >&2; exit 1; }

cookie="iocloud_access=$access; iocloud_refresh=$refresh; csrf=$(printf '0%.0s' $(seq 1 64))"
# Signed in, not sent to the sign-in page: the scores are the pages' own.
status="$(curl -s -o /dev/null -w '%{http_code}' -H "cookie: $cookie" "$base/app/billing")"
[ "$status" = 200 ] || { echo "lighthouse: the session does not sign in ($status)" >&2; exit 1; }
headers="$(python3 -c 'import json,sys; print(json.dumps({"Cookie": sys.argv[1]}))' "$cookie")"
pages=("/app/login" "/app/" "/app/clusters" "/app/clusters/$cluster" "/app/clusters/new?gpu=h100-sxm&gpu_count=8" "/app/offers" "/app/billing" "/app/team" "/app/worker")
low=0
echo "| page | form factor | performance | accessibility | best practices |"
echo "| --- | --- | ---: | ---: | ---: |"
for form in mobile desktop; do
  for p in "${pages[@]}"; do
    preset=()
    [ "$form" = desktop ] && preset=(--preset=desktop)
    CHROME_PATH="$chrome" infra/lighthouse/node_modules/.bin/lighthouse "$base$p" "${preset[@]}" \
      --quiet --output=json --output-path="$work/report.json" \
      --only-categories=performance,accessibility,best-practices \
      --extra-headers="$headers" \
      --chrome-flags="--headless=new --no-sandbox --disable-gpu --no-first-run --disable-background-networking --disable-component-update" \
      > /dev/null 2>> "$work/lighthouse.log"
    row="$(python3 - "$work/report.json" "$p" "$form" "$min" <<'PY'
import json, sys
report, page, form, minimum = json.load(open(sys.argv[1])), sys.argv[2], sys.argv[3], int(sys.argv[4])
scores = [round(100 * report["categories"][c]["score"]) for c in ("performance", "accessibility", "best-practices")]
print(f"| {page.split('?')[0]} | {form} | " + " | ".join(str(s) for s in scores) + " |")
print("LOW" if min(scores) < minimum else "OK")
PY
)"
    echo "$row" | head -1
    if [ "$(echo "$row" | tail -1)" = LOW ]; then low=1; fi
  done
done
exit "$low"
