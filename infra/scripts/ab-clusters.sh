#!/usr/bin/env bash
# Alternating A/B runs of the cluster benchmark, so that two binaries see the same minutes of a
# shared, noisy machine. Build each binary from its commit and copy it aside first, e.g. from
# the repository: git worktree add -f /tmp/ab <commit>; (cd /tmp/ab &&
# CARGO_TARGET_DIR=$OLDPWD/target cargo build --release -p iocloud-api --bin iocloud);
# cp target/release/iocloud /tmp/iocloud-old; git worktree remove --force /tmp/ab
# Usage: infra/scripts/ab-clusters.sh BINARY_A BINARY_B [ROUNDS] [RATE]
# Each run's whole output is kept in /tmp/ab-<name>-<round>.log; the table rows are printed.
set -euo pipefail
a=$1 b=$2 rounds=${3:-3} rate=${4:-}
postgres=${IOCLOUD_BENCH_POSTGRES_URL:-postgres://root@127.0.0.1:5432/test}
for round in $(seq "$rounds"); do
  for bin in "$a" "$b"; do
    log="/tmp/ab-$(basename "$bin")-$round.log"
    echo "== $bin, round $round"
    "$bin" bench clusters --postgres "$postgres" --seconds 10 ${rate:+--rate "$rate"} >"$log" 2>&1 \
      || echo "   failed: see $log"
    grep '^| \(iocloud\|bare axum\)' "$log" || true
  done
done
