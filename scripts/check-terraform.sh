#!/usr/bin/env bash
# `make check-terraform` (and .ci/run): static checks of the AWS deployment, since terraform
# itself is not installed here.
#   1. every .tf file under terraform/ parses (python-hcl2) and every variable and output has a
#      description;
#   2. every environment variable terraform sets for a container is one the container's binary
#      lists in its --help (scripts/check_terraform.py; builds the debug binaries with
#      `cargo build --locked --bins` unless TENANTCTL_BIN and TENANT_ROUTER_BIN name them);
#   3. checkov passes on terraform/ and on the Dockerfile (a skipped check is skipped in the
#      code, next to the resource, with its reason; there is no global skip list).
# The Python tools are pinned and installed once into .local/venv-terraform/ (two virtualenvs:
# checkov depends on a fork of python-hcl2 that installs the same `hcl2` module). Quiet on
# success; on failure, says what failed.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON_HCL2=python-hcl2==8.1.4
CHECKOV=checkov==3.3.30
VENVS=.local/venv-terraform

log() { printf '[check-terraform] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# install_venv_support: python3 with the venv module (Debian splits it into python3-venv).
install_venv_support() {
  local sudo=()
  command -v apt-get >/dev/null || die "python3 with the venv module is required; please install it"
  if [[ $(id -u) != 0 ]]; then
    command -v sudo >/dev/null || die "python3-venv is required: not root and no sudo; please install it"
    sudo=(sudo -n)
  fi
  log "installing python3 and python3-venv with apt-get"
  { "${sudo[@]}" apt-get update -qq &&
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3 python3-venv; } \
    </dev/null >&2 || die "installing python3-venv failed; install it and re-run"
}

# venv DIR REQUIREMENT: a virtualenv at DIR with REQUIREMENT installed. A stamp records what was
# installed, so a second run costs nothing; a broken or outdated virtualenv is rebuilt.
venv() {
  local dir=$1 requirement=$2
  if [[ -f $dir/.installed && $(<"$dir/.installed") == "$requirement" ]] &&
    "$dir/bin/python" -c '' 2>/dev/null; then
    return 0
  fi
  rm -rf "$dir"
  mkdir -p "$(dirname "$dir")"
  log "installing $requirement into $dir (first run only)"
  if ! command -v python3 >/dev/null || ! python3 -m venv "$dir" </dev/null >/dev/null 2>&1; then
    rm -rf "$dir"
    install_venv_support
    python3 -m venv "$dir" </dev/null >&2 || die "python3 -m venv $dir failed"
  fi
  if ! "$dir/bin/python" -m pip install --quiet --disable-pip-version-check "$requirement" \
    </dev/null >"$dir.pip.log" 2>&1; then
    cat "$dir.pip.log" >&2
    rm -rf "$dir"
    die "pip install $requirement failed (output above; PyPI must be reachable)"
  fi
  rm -f "$dir.pip.log"
  printf '%s' "$requirement" >"$dir/.installed"
}

venv "$VENVS/hcl2" "$PYTHON_HCL2"
venv "$VENVS/checkov" "$CHECKOV"

# The binaries whose --help is the list of accepted names.
if [[ -z ${TENANTCTL_BIN:-} || -z ${TENANT_ROUTER_BIN:-} ]]; then
  cargo build --locked --bins --quiet || die "cargo build --locked --bins failed"
  target_dir=$(cargo metadata --locked --format-version 1 --no-deps |
    "$VENVS/hcl2/bin/python" -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
  TENANTCTL_BIN=$target_dir/debug/tenantctl
  TENANT_ROUTER_BIN=$target_dir/debug/tenant-router
fi
for bin in "$TENANTCTL_BIN" "$TENANT_ROUTER_BIN"; do
  [[ -x $bin ]] || die "$bin is not an executable"
done

# 1 and 2: parse every file, then check the container configuration names.
"$VENVS/hcl2/bin/python" scripts/check_terraform.py terraform \
  --tenantctl "$TENANTCTL_BIN" --tenant-router "$TENANT_ROUTER_BIN" ||
  die "terraform parse or configuration-name check failed (above)"

# 3: checkov, without contacting any service (--skip-download).
checkov() {
  local out
  if ! out=$("$VENVS/checkov/bin/checkov" --quiet --compact --skip-download "$@" 2>&1); then
    printf '%s\n' "$out" >&2
    die "checkov $* failed (above)"
  fi
}
checkov -d terraform --framework terraform
checkov -f Dockerfile --framework dockerfile
