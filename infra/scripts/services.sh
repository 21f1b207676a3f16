#!/usr/bin/env bash
# Makes sure PostgreSQL and Redis answer on 127.0.0.1, installing them from Debian's packages
# when missing, and that a localstripe peer (a Stripe stand-in, PyPI, pinned, in a virtualenv)
# runs on 127.0.0.1 through tests/peers/localstripe_launcher.py. Prints the URLs to use as
# IOCLOUD_TEST_POSTGRES_URL, IOCLOUD_TEST_REDIS_URL and IOCLOUD_TEST_STRIPE_URL.
# Non-interactive; safe to run again (a peer started by an older launcher is restarted).
#
#   IOCLOUD_LOCALSTRIPE_PORT  (default 8420)
#   IOCLOUD_LOCALSTRIPE_VENV  (default target/localstripe-venv)
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"

log() { echo "services: $*" >&2; }
export DEBIAN_FRONTEND=noninteractive

apt_updated=0
apt_install() {
  if [ "$apt_updated" = 0 ]; then apt-get update -qq >&2; apt_updated=1; fi
  apt-get install -y -qq "$@" >&2
}

# --- PostgreSQL ---------------------------------------------------------------
pg_url="postgres://root@127.0.0.1:5432/test"
if ! command -v pg_isready >/dev/null 2>&1 || ! ls /etc/postgresql/*/main >/dev/null 2>&1; then
  log "installing PostgreSQL"
  apt_install postgresql postgresql-client
fi
if ! pg_isready -h 127.0.0.1 -p 5432 -q; then
  log "starting PostgreSQL"
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | sort -V | tail -1)" main start >&2 || true
  for _ in $(seq 1 30); do pg_isready -h 127.0.0.1 -p 5432 -q && break; sleep 1; done
fi
if ! psql "$pg_url" -Atqc 'SELECT 1' >/dev/null 2>&1; then
  # A fresh install: make a superuser `root` with a password and a `test` database.
  log "creating role root and database test"
  su postgres -c "psql -qc \"DO \\\$\\\$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'root') THEN CREATE ROLE root LOGIN SUPERUSER PASSWORD 'root'; ELSE ALTER ROLE root LOGIN SUPERUSER PASSWORD 'root'; END IF; END \\\$\\\$;\"" >&2
  su postgres -c "psql -qtAc \"SELECT 1 FROM pg_database WHERE datname = 'test'\" | grep -q 1 || createdb -O root test" >&2
  pg_url="postgres://root:root@127.0.0.1:5432/test"
fi
psql "$pg_url" -Atqc 'SELECT 1' >/dev/null

# --- Redis --------------------------------------------------------------------
redis_url="redis://127.0.0.1:6379/"
if ! command -v redis-server >/dev/null 2>&1; then
  log "installing Redis"
  apt_install redis-server
fi
if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
  log "starting Redis"
  mkdir -p /var/lib/redis /var/log/redis
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log >&2
  for _ in $(seq 1 30); do redis-cli -h 127.0.0.1 ping >/dev/null 2>&1 && break; sleep 1; done
fi
redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null

echo "IOCLOUD_TEST_POSTGRES_URL=$pg_url"
echo "IOCLOUD_TEST_REDIS_URL=$redis_url"

# --- localstripe --------------------------------------------------------------
# After the databases' variables: a peer that fails to start costs only its own.
LOCALSTRIPE_VERSION=1.15.10
ls_port="${IOCLOUD_LOCALSTRIPE_PORT:-8420}"
ls_venv="${IOCLOUD_LOCALSTRIPE_VENV:-$root/target/localstripe-venv}"
ls_launcher="$root/tests/peers/localstripe_launcher.py"
ls_pidfile="$root/target/localstripe-$ls_port.pid"
ls_log="$root/target/localstripe-$ls_port.log"
ls_url="http://127.0.0.1:$ls_port"
# Names this launcher and localstripe version: a peer answering another tag is restarted.
ls_tag="$LOCALSTRIPE_VERSION-$(sha256sum "$ls_launcher" | cut -c1-16)"
mkdir -p "$root/target"

if ! "$ls_venv/bin/python" -c "import localstripe, sys; sys.exit(localstripe.__version__ != '$LOCALSTRIPE_VERSION')" 2>/dev/null; then
  log "installing localstripe $LOCALSTRIPE_VERSION into $ls_venv"
  # --clear: a venv moved or copied from elsewhere has scripts that point at the old place.
  python3 -m venv --clear "$ls_venv" >&2
  "$ls_venv/bin/pip" install --quiet --disable-pip-version-check "localstripe==$LOCALSTRIPE_VERSION" >&2
fi

ls_answer() { curl -fsS --max-time 2 "$ls_url/_config/launcher" 2>/dev/null || true; }
ls_ours() { [ -f "$ls_pidfile" ] && grep -qF localstripe_launcher "/proc/$(cat "$ls_pidfile")/cmdline" 2>/dev/null; }
answer="$(ls_answer)"
if [ -n "$answer" ] && ! grep -qF "\"$ls_tag\"" <<<"$answer"; then
  if ls_ours; then
    log "restarting localstripe (the launcher changed)"
    kill "$(cat "$ls_pidfile")"
    for _ in $(seq 1 50); do ls_ours || break; sleep 0.1; done
    answer=""
  else
    log "port $ls_port answers, but not as this launcher; set IOCLOUD_LOCALSTRIPE_PORT"
    exit 1
  fi
fi
if [ -z "$answer" ]; then
  if curl -sS --max-time 2 "$ls_url/" >/dev/null 2>&1; then
    log "port $ls_port is taken by something else; set IOCLOUD_LOCALSTRIPE_PORT"
    exit 1
  fi
  log "starting localstripe on $ls_url (log: $ls_log)"
  # Its own session, and none of this script's output: it outlives the script, and whoever
  # reads this script's output to its end must not wait for it.
  rm -f "$ls_pidfile"
  setsid "$ls_venv/bin/python" "$ls_launcher" --port "$ls_port" --tag "$ls_tag" \
    --pidfile "$ls_pidfile" </dev/null >"$ls_log" 2>&1 &
  for _ in $(seq 1 100); do grep -qF "\"$ls_tag\"" <<<"$(ls_answer)" && break; sleep 0.2; done
fi
grep -qF "\"$ls_tag\"" <<<"$(ls_answer)" || { log "localstripe did not start:"; tail -20 "$ls_log" >&2; exit 1; }

echo "IOCLOUD_TEST_STRIPE_URL=$ls_url"
