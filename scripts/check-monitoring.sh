#!/usr/bin/env bash
# `make check-monitoring`: the Prometheus alert rules parse and pass their unit tests
# (promtool, from Debian's `prometheus` package, installed when missing), the Grafana dashboard
# is JSON with unique panel ids that matches Grafana's own published dashboard schema
# (@grafana/schema, checked by the TypeScript compiler; both from npm, installed when missing),
# and every metric the rules and the dashboard name is one the router or the control plane
# registers (a renamed metric fails here, not in production).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v promtool >/dev/null; then
  command -v apt-get >/dev/null || { echo "check-monitoring needs promtool (Debian package prometheus)" >&2; exit 1; }
  sudo=()
  if [[ $(id -u) -ne 0 ]]; then sudo=(sudo -n); fi
  echo "[check-monitoring] installing promtool (apt-get install prometheus)" >&2
  { "${sudo[@]}" apt-get update -qq &&
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus; } </dev/null >&2
fi
promtool check rules monitoring/prometheus/alerts.yml
(cd monitoring/prometheus && promtool test rules alerts.test.yml)
schema_check=monitoring/grafana/schema-check
# Installed again whenever the lock file changed since the last install.
if ! cmp -s "$schema_check/package-lock.json" "$schema_check/node_modules/.installed-lock.json"; then
  echo "[check-monitoring] installing Grafana's dashboard schema and TypeScript (npm ci)" >&2
  (cd "$schema_check" && npm ci --no-audit --no-fund --silent && cp package-lock.json node_modules/.installed-lock.json) >&2
fi
node "$schema_check/check.mjs" monitoring/grafana/*.json
python3 - <<'PY'
import json, re, sys, glob
registered = set()
for path, prefix in [("router/src/metrics.rs", "tenant_router"), ("control-plane/src/metrics.rs", "tenantctl")]:
    for name in re.findall(r'register\(\s*"([a-z_]+)"', open(path).read()):
        registered.add(f"{prefix}_{name}")
def known(metric):
    base = re.sub(r"_(total|bucket|sum|count)$", "", metric)
    return metric in registered or base in registered or metric == "up"
exprs = []
rules = open("monitoring/prometheus/alerts.yml").read()
exprs += re.findall(r"expr:\s*\|?\s*\n?((?:.|\n)*?)(?=\n\s+(?:for|labels):)", rules)
dash = json.load(open("monitoring/grafana/tenancy-overview.json"))
ids = [p["id"] for p in dash["panels"]]
if len(ids) != len(set(ids)):
    sys.exit("dashboard: duplicate panel ids")
exprs += [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]
words = set()
for expr in exprs:
    words |= set(re.findall(r"\b((?:tenant_router|tenantctl)_[a-z_]+|up)\b(?=\s*[{\[(]|\s*[)/<>=!]|\s*$)", expr))
unknown = sorted(w for w in words if not known(w))
if unknown:
    sys.exit(f"metrics not registered by the router or the control plane: {unknown}")
print(f"[check-monitoring] {len(words)} metrics named, all registered; {len(ids)} dashboard panels")
PY
