#!/usr/bin/env bash
# A backup taken and restored as docs/operations.md says, checked end to end: a server with a
# living network (`serve --demo`) and a customer who ran a cluster writes a database; pg_dump
# takes it (once the server stopped, so that the row counts can be compared after); pg_restore
# makes a fresh database of it; every table holds as many rows as the source; `iocloud migrate`
# changes nothing there; `iocloud admin books` finds the books right; and a server on the
# restored database lets the customer log in and shows the cluster ended.
#
#   infra/scripts/backup-restore.sh [path/to/iocloud]   (default: target/debug/iocloud)
#
# Needs Postgres at IOCLOUD_TEST_POSTGRES_URL (an admin URL; databases of its own are made and
# dropped) and pg_dump/pg_restore of the server's major version.
set -euo pipefail
cd "$(dirname "$0")/../.."

bin="${1:-target/debug/iocloud}"
admin_url="${IOCLOUD_TEST_POSTGRES_URL:?set IOCLOUD_TEST_POSTGRES_URL to a Postgres admin URL}"
port="${IOCLOUD_BACKUP_PORT:-18282}"
base="http://127.0.0.1:$port"
run="$$"
source_db="iocloud_backup_source_$run"
restored_db="iocloud_backup_restored_$run"
db_url() { echo "${admin_url%/*}/$1"; }
work="$(mktemp -d)"
server_pid=""
cleanup() {
  if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
  psql -q "$admin_url" -c "DROP DATABASE IF EXISTS $source_db" -c "DROP DATABASE IF EXISTS $restored_db" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
json() { python3 -c "import json,sys; print(json.load(sys.stdin)$1)"; }
# A busy server (the demo's agents all starting at once) answers 503 overloaded with
# Retry-After, having done nothing: curl sends it again after the wait.
busy=(--retry 20 --retry-max-time 120)

serve() { # serve DATABASE_URL [flags…]: starts the server and waits until it is ready
  local url="$1"; shift
  DATABASE_URL="$url" IOCLOUD_LISTEN="127.0.0.1:$port" IOCLOUD_ACCRUAL_INTERVAL_SECS=1 \
    IOCLOUD_SIGNUP_CREDIT_USD=100 RUST_LOG=warn "$bin" serve "$@" >>"$work/server.log" 2>&1 &
  server_pid=$!
  for _ in $(seq 1 300); do
    curl -fsS "$base/readyz" >/dev/null 2>&1 && return 0
    sleep 0.2
  done
  cat "$work/server.log" >&2
  echo "backup-restore: the server did not become ready" >&2
  exit 1
}
stop() { kill -TERM "$server_pid"; wait "$server_pid" || true; server_pid=""; }

psql -q "$admin_url" -c "CREATE DATABASE $source_db" -c "CREATE DATABASE $restored_db"

echo "backup-restore: a living network and a customer's cluster on $source_db"
serve "$(db_url "$source_db")" --demo
email="backup@example.com"
password="correct horse battery staple"
access="$(curl -fsS "${busy[@]}" -X POST "$base/v1/auth/signup" -H 'content-type: application/json' \
  -d "{\"email\":\"$email\",\"password\":\"$password\",\"name\":\"Backup\",\"org_name\":\"Backups\"}" | json '["access_token"]')"
call() { curl -fsS "${busy[@]}" -X "$1" "$base$2" -H 'content-type: application/json' -H "authorization: Bearer $access" ${3:+-d "$3"}; }
model=""
for _ in $(seq 1 100); do # the demo's agents take a few seconds to verify and report
  model="$(call GET /v1/offers | json '[0]["gpu_model"]' 2>/dev/null || true)"
  [ -n "$model" ] && break
  sleep 0.3
done
[ -n "$model" ] || { echo "backup-restore: no offers" >&2; exit 1; }
cluster="$(call POST /v1/clusters "{\"name\":\"backed-up\",\"kind\":\"container\",\"image\":\"busybox\",\"gpu_model\":\"$model\",\"gpu_count\":1,\"duration_hours\":1}" | json '["id"]')"
for _ in $(seq 1 150); do
  [ "$(call GET "/v1/clusters/$cluster" | json '["status"]')" = running ] && break
  sleep 0.2
done
sleep 3 # a few accrual passes: usage lines and ledger postings
call DELETE "/v1/clusters/$cluster" >/dev/null
for _ in $(seq 1 150); do
  [ "$(call GET "/v1/clusters/$cluster" | json '["status"]')" = terminated ] && break
  sleep 0.2
done

stop
pg_dump --format=custom --no-owner --no-privileges --file="$work/backup.dump" "$(db_url "$source_db")"
echo "backup-restore: dumped $(du -h "$work/backup.dump" | cut -f1)"

pg_restore --no-owner --no-privileges --exit-on-error --single-transaction \
  --dbname="$(db_url "$restored_db")" "$work/backup.dump"

counts() { # counts DB: every table and its rows, one per line
  psql -qAt "$(db_url "$1")" -c "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' AND table_type = 'BASE TABLE' ORDER BY table_name" |
    while read -r t; do echo "$t $(psql -qAt "$(db_url "$1")" -c "SELECT count(*) FROM \"$t\"")"; done
}
counts "$source_db" >"$work/source.counts"
counts "$restored_db" >"$work/restored.counts"
diff -u "$work/source.counts" "$work/restored.counts" || { echo "backup-restore: the restored rows differ" >&2; exit 1; }
echo "backup-restore: $(wc -l <"$work/source.counts") tables, $(awk '{s+=$2} END {print s}' "$work/source.counts") rows, the same in both"

migrations() { psql -qAt "$(db_url "$restored_db")" -c "SELECT count(*), max(version) FROM _sqlx_migrations"; }
before="$(migrations)"
DATABASE_URL="$(db_url "$restored_db")" "$bin" migrate
[ "$(migrations)" = "$before" ] || { echo "backup-restore: migrate changed the restored schema" >&2; exit 1; }
DATABASE_URL="$(db_url "$restored_db")" "$bin" admin books

serve "$(db_url "$restored_db")"
access="$(curl -fsS "${busy[@]}" -X POST "$base/v1/auth/login" -H 'content-type: application/json' \
  -d "{\"email\":\"$email\",\"password\":\"$password\"}" | json '["access_token"]')"
status="$(call GET "/v1/clusters/$cluster" | json '["status"]')"
[ "$status" = terminated ] || { echo "backup-restore: the restored cluster is $status" >&2; exit 1; }
stop
echo "backup-restore: restored, migrated (nothing to do), books right, the customer logs in and sees the cluster ended"
