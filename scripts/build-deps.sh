#!/usr/bin/env bash
# scripts/build-deps.sh - what building the workspace needs beyond Rust: libclang, which the
# router's statement classifier (the pg_query crate: PostgreSQL's own parser, bindgen-generated
# bindings) needs at build time. Installed with apt-get when missing; quiet when present.
set -euo pipefail

log() { printf '[build-deps] %s\n' "$*" >&2; }

has_libclang() {
  [[ -n ${LIBCLANG_PATH:-} ]] && return 0
  # libclang itself, not libclang-cpp (which some images carry alone).
  ldconfig -p 2>/dev/null | grep -Eq 'libclang(-[0-9.]+)?\.so' && return 0
  compgen -G '/usr/lib/llvm-*/lib/libclang.so*' >/dev/null || compgen -G '/usr/lib/llvm-*/lib/libclang-[0-9]*.so*' >/dev/null
}

has_libclang && exit 0
command -v apt-get >/dev/null || {
  log "libclang is needed to build (pg_query's bindings): install it (e.g. libclang-dev) and re-run"
  exit 1
}
sudo=()
if [[ $(id -u) -ne 0 ]]; then
  command -v sudo >/dev/null || { log "cannot install libclang-dev: not root and no sudo"; exit 1; }
  if [[ -t 0 ]]; then sudo=(sudo); else sudo=(sudo -n); fi
fi
log "installing libclang-dev with apt-get (needed to build PostgreSQL's parser bindings)"
{ "${sudo[@]}" apt-get update -qq &&
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libclang-dev; } </dev/null >&2
has_libclang || { log "libclang-dev installed but libclang not found"; exit 1; }
