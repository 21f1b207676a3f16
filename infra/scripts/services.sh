#!/usr/bin/env bash
# Makes sure PostgreSQL and Redis answer on 127.0.0.1, installing them from Debian's packages
# when missing, and that a localstripe peer (a Stripe stand-in, PyPI, pinned, in a virtualenv)
# runs on 127.0.0.1 through tests/peers/localstripe_launcher.py, and a Solana JSON-RPC peer
# (tests/peers/solana_peer.py over solders' LiteSVM) beside it, and an SMTP peer
# (tests/peers/smtp_peer.py over aiosmtpd) that keeps the mail it receives for tests to read.
# Prints the URLs to use as IOCLOUD_TEST_POSTGRES_URL, IOCLOUD_TEST_REDIS_URL,
# IOCLOUD_TEST_STRIPE_URL, IOCLOUD_TEST_SOLANA_URL, IOCLOUD_TEST_SMTP_URL (where to send mail)
# and IOCLOUD_TEST_SMTP_PEER_URL (where to read it back).
# Non-interactive; safe to run again (a peer started by an older launcher is restarted).
#
#   IOCLOUD_LOCALSTRIPE_PORT  (default 8420)
#   IOCLOUD_LOCALSTRIPE_VENV  (default target/localstripe-venv)
#   IOCLOUD_SOLANA_PEER_PORT  (default 8899)
#   IOCLOUD_SOLANA_VENV       (default target/solana-venv)
#   IOCLOUD_SMTP_PEER_PORT    (default 8026: the SMTP peer's HTTP port; it takes SMTP on the
#                              port below it, 8025 by default)
#   IOCLOUD_SMTP_VENV         (default target/smtp-venv)
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

# --- Python peers -------------------------------------------------------------
# A peer is a Python script of ours in tests/peers/, run from its own virtualenv with one
# pinned package. It answers GET <probe> with its `--tag`: the package's version and a hash
# of the script, so a peer started by an older script is restarted. It runs in its own
# session with none of this script's output: it outlives the script, and whoever reads this
# script's output to its end must not wait for it.
#
#   python_peer NAME PACKAGE VERSION VENV SCRIPT PORT PROBE PORT_VARIABLE
# Each step checks its own outcome (called as an `if` condition, `set -e` does not apply).
python_peer() {
  local name="$1" package="$2" version="$3" venv="$4" script="$5" port="$6" probe="$7" port_var="$8"
  local url="http://127.0.0.1:$port" pidfile="$root/target/$name-$port.pid" logfile="$root/target/$name-$port.log"
  local tag answer
  tag="$version-$(sha256sum "$script" | cut -c1-16)"
  mkdir -p "$root/target"
  if ! "$venv/bin/python" -c "import importlib.metadata as m, sys; sys.exit(m.version('$package') != '$version')" 2>/dev/null; then
    log "installing $package $version into $venv"
    # --clear: a venv moved or copied from elsewhere has scripts that point at the old place.
    python3 -m venv --clear "$venv" >&2 || return 1
    "$venv/bin/pip" install --quiet --disable-pip-version-check "$package==$version" >&2 || return 1
  fi
  peer_answer() { curl -fsS --max-time 2 "$url$probe" 2>/dev/null || true; }
  peer_up() { grep -qF "\"$tag\"" <<<"$(peer_answer)"; }
  peer_ours() { [ -f "$pidfile" ] && grep -qF "$(basename "$script")" "/proc/$(cat "$pidfile")/cmdline" 2>/dev/null; }
  answer="$(peer_answer)"
  if [ -n "$answer" ] && ! peer_up; then
    if peer_ours; then
      log "restarting $name (its script changed)"
      kill "$(cat "$pidfile")" || return 1
      for _ in $(seq 1 50); do peer_ours || break; sleep 0.1; done
      answer=""
    else
      log "port $port answers, but not as $name; set $port_var"
      return 1
    fi
  fi
  if [ -z "$answer" ]; then
    if curl -sS --max-time 2 "$url/" >/dev/null 2>&1; then
      log "port $port is taken by something else; set $port_var"
      return 1
    fi
    log "starting $name on $url (log: $logfile)"
    rm -f "$pidfile"
    setsid "$venv/bin/python" "$script" --port "$port" --tag "$tag" --pidfile "$pidfile" \
      </dev/null >"$logfile" 2>&1 &
    for _ in $(seq 1 100); do peer_up && break; sleep 0.2; done
  fi
  peer_up || { log "$name did not start:"; tail -20 "$logfile" >&2; return 1; }
}

# localstripe, a fake but stateful Stripe: the card tests need it, so it failing stops here.
ls_port="${IOCLOUD_LOCALSTRIPE_PORT:-8420}"
python_peer localstripe localstripe 1.15.10 "${IOCLOUD_LOCALSTRIPE_VENV:-$root/target/localstripe-venv}" \
  "$root/tests/peers/localstripe_launcher.py" "$ls_port" /_config/launcher IOCLOUD_LOCALSTRIPE_PORT || exit 1
echo "IOCLOUD_TEST_STRIPE_URL=http://127.0.0.1:$ls_port"

# A Solana JSON-RPC node over LiteSVM, which solders bundles. Failing to start costs only
# IOCLOUD_TEST_SOLANA_URL: the script says why and goes on, and those tests say they skip.
sol_port="${IOCLOUD_SOLANA_PEER_PORT:-8899}"
if python_peer solana-peer solders 0.29.0 "${IOCLOUD_SOLANA_VENV:-$root/target/solana-venv}" \
  "$root/tests/peers/solana_peer.py" "$sol_port" /_control/launcher IOCLOUD_SOLANA_PEER_PORT; then
  echo "IOCLOUD_TEST_SOLANA_URL=http://127.0.0.1:$sol_port"
else
  log "no Solana peer: tests that need IOCLOUD_TEST_SOLANA_URL will not run"
fi

# An SMTP server that accepts every message and keeps it in memory, with an HTTP side to read
# them back. It takes SMTP on the port below its HTTP port. Failing to start costs only
# IOCLOUD_TEST_SMTP_URL, as with the Solana peer.
smtp_peer_port="${IOCLOUD_SMTP_PEER_PORT:-8026}"
if python_peer smtp-peer aiosmtpd 1.4.6 "${IOCLOUD_SMTP_VENV:-$root/target/smtp-venv}" \
  "$root/tests/peers/smtp_peer.py" "$smtp_peer_port" /_control/launcher IOCLOUD_SMTP_PEER_PORT; then
  echo "IOCLOUD_TEST_SMTP_URL=smtp://127.0.0.1:$((smtp_peer_port - 1))"
  echo "IOCLOUD_TEST_SMTP_PEER_URL=http://127.0.0.1:$smtp_peer_port"
else
  log "no SMTP peer: tests that need IOCLOUD_TEST_SMTP_URL will not run"
fi
