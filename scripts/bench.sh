#!/usr/bin/env bash
# `make bench`: the benchmarks under bench/, release build, against the services of
# scripts/services.sh on this machine. Prints Markdown rows for bench/RESULTS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/build-deps.sh
mkdir -p .local
scripts/services.sh up >.local/bench.env
set -a
# shellcheck disable=SC1091
. .local/bench.env
set +a
echo "# $(date -u +%Y-%m-%d) on $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB, $(psql --version | head -1)"
echo "# command: make bench"
# The router benchmarks run the release tenant-router (and the baseline) as processes.
cargo build --release --locked --quiet -p tenant-router --bin tenant-router
cargo build --release --locked --quiet -p tenancy-bench --bins
for bench in ${BENCHES:-provisioning catalog resolve router-throughput router-contention router-rate-limit cold-open router-fleet}; do
  case $bench in
    resolve) # criterion: prints its own estimates
      cargo bench --locked --quiet -p tenancy-bench --bench resolve -- --noplot 2>&1 | grep -E '^L1|time:' ;;
    *) cargo run --release --locked --quiet -p tenancy-bench --bin "$bench" ;;
  esac
done
