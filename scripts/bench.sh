#!/usr/bin/env bash
# `make bench`: the benchmarks under bench/, release build, against the services of
# scripts/services.sh on this machine. Prints Markdown rows for bench/RESULTS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .local
scripts/services.sh up >.local/bench.env
set -a
# shellcheck disable=SC1091
. .local/bench.env
set +a
echo "# $(date -u +%Y-%m-%d) on $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB, $(psql --version | head -1)"
echo "# command: make bench"
for bench in ${BENCHES:-provisioning catalog}; do
  cargo run --release --locked --quiet -p tenancy-bench --bin "$bench"
done
