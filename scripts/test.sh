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
mkdir -p .local
scripts/services.sh up >.local/test.env
set -a
# shellcheck disable=SC1091
. .local/test.env
set +a

log "running the test suite"
cargo test --workspace --locked -- --color never "$@"
