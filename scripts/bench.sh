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
BENCHES=${BENCHES:-provisioning catalog resolve router-throughput router-contention router-rate-limit cold-open router-fleet router-postgres tenant-move}

# PgBouncer, the reference of `router-postgres`: the distribution's package, installed when
# missing (as scripts/services.sh installs PostgreSQL: root directly, else sudo without a prompt).
need_pgbouncer() {
  [[ -x /usr/sbin/pgbouncer || -x /usr/bin/pgbouncer ]] && return 0
  command -v apt-get >/dev/null || { echo "router-postgres needs pgbouncer: please install it" >&2; exit 1; }
  local sudo=()
  if [[ $(id -u) -ne 0 ]]; then
    command -v sudo >/dev/null || { echo "cannot install pgbouncer: not root and no sudo" >&2; exit 1; }
    if [[ -t 0 ]]; then sudo=(sudo); else sudo=(sudo -n); fi
  fi
  echo "installing pgbouncer with apt-get (the router-postgres benchmark's reference)" >&2
  { "${sudo[@]}" apt-get update -qq &&
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq pgbouncer; } </dev/null >&2
}
if [[ " $BENCHES " == *" router-postgres "* ]]; then
  need_pgbouncer
  # 1,000 idle clients plus the servers' own: more descriptors than some shells allow.
  if [[ $(ulimit -Sn) != unlimited ]] && (($(ulimit -Sn) < 4096)); then
    ulimit -n 4096 2>/dev/null || echo "warning: open files limited to $(ulimit -Sn); 1,000 idle clients may not fit" >&2
  fi
fi

echo "# $(date -u +%Y-%m-%d) on $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB, $(psql --version | head -1)"
echo "# command: BENCHES=\"$BENCHES\" make bench"
echo "# load average (1, 5, 15 min): $(cut -d' ' -f1-3 /proc/loadavg)"
# The router benchmarks run the release tenant-router (and the baseline) as processes.
cargo build --release --locked --quiet -p tenant-router --bin tenant-router
cargo build --release --locked --quiet -p tenancy-bench --bins
for bench in $BENCHES; do
  case $bench in
    resolve) # criterion: prints its own estimates
      cargo bench --locked --quiet -p tenancy-bench --bench resolve -- --noplot 2>&1 | grep -E '^L1|time:' ;;
    *) cargo run --release --locked --quiet -p tenancy-bench --bin "$bench" ;;
  esac
done
