#!/usr/bin/env bash
# `make test`: starts the services the tests need (scripts/services.sh), runs the whole suite
# against them, and stops them again unless they were already running (e.g. for `make demo`).
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '[test] %s\n' "$*" >&2; }

# Leave services alone if everything was already up (a developer's or the demo's).
# (Captured first: under pipefail, `status | grep -q` fails when grep stops reading early.)
status_before="$(scripts/services.sh status 2>/dev/null || true)"
was_running=true
if [[ -z "$status_before" ]] || grep -q stopped <<<"$status_before"; then
  was_running=false
fi

stop_services() {
  if [[ "$was_running" == false ]]; then
    log "stopping the services this run started"
    scripts/services.sh down >&2 || true
  fi
}
trap stop_services EXIT

scripts/build-deps.sh

# The Node clients the e2e tests drive (Neon's serverless driver, node-postgres):
# tests/clients/node, installed from its package-lock.json when missing.
install_node_clients() {
  local dir=tests/clients/node
  if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    log "installing Node.js and npm"
    if [[ $EUID -eq 0 ]]; then sudo=(); else sudo=(sudo); fi
    "${sudo[@]}" apt-get update -qq >&2
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >&2
  fi
  if [[ ! -d "$dir/node_modules" || "$dir/package-lock.json" -nt "$dir/node_modules" ]]; then
    log "installing the Node test clients (npm ci in $dir)"
    (cd "$dir" && npm ci --no-audit --no-fund >&2)
  fi
}
install_node_clients

# Headless Chromium for the console's browser test (tests/e2e/tests/e2e/console.rs drives it with
# Playwright from tests/clients/node): Debian's package; Playwright's own browser download is
# not used.
install_chromium() {
  if [[ -x ${CHROMIUM:-/usr/bin/chromium} ]]; then
    return
  fi
  log "installing Chromium (Debian's chromium package) for the console's browser test"
  if [[ $EUID -eq 0 ]]; then sudo=(); else sudo=(sudo); fi
  "${sudo[@]}" apt-get update -qq >&2
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >&2
}
install_chromium

mkdir -p .local
scripts/services.sh up >.local/test.env
set -a
# shellcheck disable=SC1091
. .local/test.env
set +a

# The Python clients the e2e tests drive (psycopg, asyncpg): pinned in
# tests/clients/python/requirements.txt, installed into the harness's virtualenv (made by
# scripts/services.sh for moto: TENANCY_PYTHON) whenever that file differs from what was installed.
install_python_clients() {
  local requirements=tests/clients/python/requirements.txt
  local python=${TENANCY_PYTHON:?scripts/services.sh env names no TENANCY_PYTHON}
  local installed
  installed="$(dirname "$(dirname "$python")")/test-clients-requirements.txt"
  if ! cmp -s "$requirements" "$installed"; then
    log "installing the Python test clients (pip install -r $requirements)"
    "$python" -m pip install --quiet --disable-pip-version-check -r "$requirements" </dev/null >&2
    cp "$requirements" "$installed"
  fi
}
install_python_clients

# pgbench (the e2e tests run it through the router) comes with PostgreSQL's server package,
# which scripts/services.sh installs; a server found elsewhere may come without it.
if [[ ! -x ${TENANCY_PG_BIN:-}/pgbench ]] && ! command -v pgbench >/dev/null; then
  log "pgbench is missing (neither in $TENANCY_PG_BIN nor on PATH): install PostgreSQL's server package"
  exit 1
fi

log "running the test suite"
cargo test --workspace --locked -- --color never "$@"
