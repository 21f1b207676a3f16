#!/usr/bin/env bash
# Alternating A/B runs of the cluster benchmark, so that two binaries see the same minutes of a
# shared, noisy machine. Build each binary from its commit and copy it aside first, e.g. from
# the repository: git worktree add -f /tmp/ab <commit>; (cd /tmp/ab &&
# CARGO_TARGET_DIR=$OLDPWD/target cargo build --release -p iocloud-api --bin iocloud);
# cp target/release/iocloud /tmp/iocloud-old; git worktree remove --force /tmp/ab
# (then touch this checkout's sources: cargo took them for built by the worktree's build).
# Usage: infra/scripts/ab-clusters.sh BINARY_A BINARY_B [ROUNDS] [RATE]
# Each run's whole output is kept in /tmp/ab-<name>-<round>.log; the table rows are printed.
# Where the server has pg_stat_statements loaded (shared_preload_libraries, then CREATE
# EXTENSION pg_stat_statements in the admin database), each run also prints its statements and
# transactions per life: every statement the server ran, divided by the lives of both phases.
set -euo pipefail
a=$1 b=$2 rounds=${3:-3} rate=${4:-}
postgres=${IOCLOUD_BENCH_POSTGRES_URL:-postgres://root@127.0.0.1:5432/test}
counting=$(psql "$postgres" -qAtc "SELECT 1 FROM pg_stat_statements LIMIT 1" 2>/dev/null || true)
for round in $(seq "$rounds"); do
  for bin in "$a" "$b"; do
    log="/tmp/ab-$(basename "$bin")-$round.log"
    echo "== $bin, round $round"
    if [ -n "$counting" ]; then psql "$postgres" -qAtc "SELECT pg_stat_statements_reset()" >/dev/null; fi
    "$bin" bench clusters --postgres "$postgres" --seconds 10 ${rate:+--rate "$rate"} >"$log" 2>&1 \
      || echo "   failed: see $log"
    grep '^| \(iocloud\|bare axum\)' "$log" || true
    if [ -n "$counting" ]; then
      lives=$(grep '^| iocloud' "$log" | awk -F'|' '{s += $9} END {print s + 0}')
      psql "$postgres" -qAtc "SELECT 'statements per life ' || round(sum(calls)::numeric / NULLIF($lives, 0), 1) \
        || ', transactions per life ' || round(sum(calls) FILTER (WHERE query = 'BEGIN')::numeric / NULLIF($lives, 0), 2) \
        FROM pg_stat_statements WHERE query NOT LIKE '%pg_stat_statements%' AND query NOT LIKE '%scratch%'"
    fi
  done
done
