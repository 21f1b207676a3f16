#!/usr/bin/env bash
# Makes sure PostgreSQL and Redis answer on 127.0.0.1, installing them from Debian's packages
# when missing. Prints the URLs to use as IOCLOUD_TEST_POSTGRES_URL and IOCLOUD_TEST_REDIS_URL.
# Non-interactive; safe to run again.
set -euo pipefail

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
