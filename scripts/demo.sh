#!/usr/bin/env bash
# `make demo` (run) and `make stop` (stop).
#
# run: starts PostgreSQL, Redis and moto; builds; starts `tenantctl serve` and `tenant-router`;
#      provisions three tenants by sending signed billing webhooks; queries each through the
#      router (each sees only its own rows); upgrades one to enterprise by webhook (it moves into
#      a database of its own); adds a migration and applies it to the fleet; prints
#      what to try next. Leaves everything running. Needs no input.
# stop: stops both servers and the services.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
DEMO="$ROOT/.local/demo"
BIN="$ROOT/target/debug"
CONTROL_LISTEN=127.0.0.1:8080
ROUTER_LISTEN_ADDR=127.0.0.1:8081
ROUTER_ADMIN=127.0.0.1:9091
ROUTER_PG_ADDR=127.0.0.1:6432
BASE_DOMAIN=app.localhost

bold() { if [[ -t 1 ]]; then printf '\033[1m%s\033[0m\n' "$*"; else printf '%s\n' "$*"; fi; }
step() { printf '\n'; bold "==> $*"; }
die() { printf 'demo: %s\n' "$*" >&2; exit 1; }

stop_servers() {
  for name in tenant-router tenantctl; do
    local pidfile="$DEMO/$name.pid"
    if [[ -f "$pidfile" ]]; then
      local pid
      pid="$(cat "$pidfile")"
      if kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
      fi
      rm -f "$pidfile"
    fi
  done
}

wait_http() { # url, what, logfile
  for _ in $(seq 1 100); do
    if curl -fsS -o /dev/null "$1" 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  tail -n 20 "$3" >&2 || true
  die "$2 did not become healthy at $1 (log: $3)"
}

port_free() {
  python3 - "$1" <<'PY'
import socket, sys
host, port = sys.argv[1].rsplit(":", 1)
s = socket.socket()
try:
    s.bind((host, int(port)))
except OSError:
    sys.exit(1)
PY
}

sql() { # slug, json body
  local conn
  conn="$("$BIN/tenantctl" tenants connection-string "$1")"
  curl -sS "http://$ROUTER_LISTEN_ADDR/sql" -H "Host: $1.$BASE_DOMAIN" \
    -H "Neon-Connection-String: $conn" -H 'Content-Type: application/json' -d "$2"
}

sql_status() { # slug: the HTTP status of a trivial query
  local conn
  conn="$("$BIN/tenantctl" tenants connection-string "$1")"
  curl -sS -o /dev/null -w '%{http_code}' "http://$ROUTER_LISTEN_ADDR/sql" -H "Host: $1.$BASE_DOMAIN" \
    -H "Neon-Connection-String: $conn" -d '{"query":"SELECT 1"}'
}

pretty_rows() {
  python3 -c 'import json,sys
body = json.load(sys.stdin)
if "rows" in body:
    for row in body["rows"]: print("     ", json.dumps(row))
else:
    print("      error:", body.get("code") or body.get("error", {}).get("code", ""), body.get("message", ""))'
}

run() {
  command -v curl >/dev/null || die "curl is needed (apt-get install curl)"
  command -v cargo >/dev/null || die "cargo is needed (https://rustup.rs)"
  mkdir -p "$DEMO"
  stop_servers

  step "Starting PostgreSQL, Redis and a local AWS Secrets Manager (moto)"
  scripts/services.sh up >"$DEMO/services.env"
  set -a
  # shellcheck disable=SC1091
  . "$DEMO/services.env"
  set +a

  step "Building tenantctl and tenant-router"
  scripts/build-deps.sh
  if ! cargo build --locked --bins --quiet; then
    die "the build failed (see above)"
  fi

  for addr in "$CONTROL_LISTEN" "$ROUTER_LISTEN_ADDR" "$ROUTER_ADMIN" "$ROUTER_PG_ADDR"; do
    port_free "$addr" || die "$addr is in use by another program; stop it and run make demo again"
  done

  step "Preparing a fresh demo catalog (database tenancy_demo; roles and tenant databases demo_*)"
  local admin_url="$DATABASE_URL"
  local psql=psql
  [[ -x "${TENANCY_PG_BIN:-}/psql" ]] && psql="$TENANCY_PG_BIN/psql"
  "$psql" -q -X "$admin_url" -v ON_ERROR_STOP=1 >/dev/null <<'SQL'
DROP DATABASE IF EXISTS tenancy_demo WITH (FORCE);
SELECT format('DROP DATABASE %I WITH (FORCE)', datname) FROM pg_database WHERE datname LIKE 'demo\_%' \gexec
SELECT format('DROP ROLE %I', rolname) FROM pg_roles WHERE rolname LIKE 'demo\_%' \gexec
CREATE DATABASE tenancy_demo;
SQL
  rm -rf "$DEMO/migrations"
  cp -r migrations "$DEMO/migrations"
  [[ -f "$DEMO/secrets.key" ]] || { head -c 32 /dev/urandom | base64 >"$DEMO/secrets.key"; chmod 600 "$DEMO/secrets.key"; }
  [[ -f "$DEMO/webhook.secret" ]] || { printf 'whsec_%s' "$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')" >"$DEMO/webhook.secret"; chmod 600 "$DEMO/webhook.secret"; }

  export DATABASE_URL="${admin_url%/*}/tenancy_demo"
  export TENANT_BASE_DOMAIN="$BASE_DOMAIN" SECRETS_BACKEND=local SECRETS_PREFIX=demo
  export SECRETS_LOCAL_KEY_FILE="$DEMO/secrets.key" TENANT_ROLE_PREFIX=demo REDIS_KEY_PREFIX="demo:"
  export TENANT_MIGRATIONS_DIR="$DEMO/migrations" TENANT_TEMPLATES_DIR="$ROOT/tenant-templates"
  export TENANTCTL_LISTEN="$CONTROL_LISTEN" ROUTER_LISTEN="$ROUTER_LISTEN_ADDR" ROUTER_ADMIN_LISTEN="$ROUTER_ADMIN"
  # The console shows the router's pools from its admin listener.
  export TENANTCTL_ROUTERS="http://$ROUTER_ADMIN"
  # The demo's PostgreSQL listener takes clients without TLS (local only); see the README.
  export ROUTER_PG_LISTEN="$ROUTER_PG_ADDR" ROUTER_PG_ALLOW_PLAINTEXT=true
  [[ -f "$DEMO/records.key" ]] || { head -c 32 /dev/urandom | base64 >"$DEMO/records.key"; chmod 600 "$DEMO/records.key"; }
  BILLING_WEBHOOK_SECRET="$(cat "$DEMO/webhook.secret")"
  ROUTER_RECORDS_KEY="$(cat "$DEMO/records.key")"
  export ROUTER_RECORDS_KEY
  export BILLING_WEBHOOK_SECRET BILLING_WEBHOOK_URL="http://$CONTROL_LISTEN/v1/webhooks/billing"
  {
    echo "# Source this file to use tenantctl against the demo: set -a; . .local/demo/env; set +a"
    for var in DATABASE_URL REDIS_URL TENANT_BASE_DOMAIN SECRETS_BACKEND SECRETS_PREFIX SECRETS_LOCAL_KEY_FILE \
      TENANT_ROLE_PREFIX REDIS_KEY_PREFIX TENANT_MIGRATIONS_DIR TENANT_TEMPLATES_DIR BILLING_WEBHOOK_SECRET BILLING_WEBHOOK_URL; do
      printf '%s=%s\n' "$var" "${!var}"
    done
  } >"$DEMO/env"
  chmod 600 "$DEMO/env"

  step "Starting tenantctl serve ($CONTROL_LISTEN) and tenant-router ($ROUTER_LISTEN_ADDR, admin $ROUTER_ADMIN)"
  nohup "$BIN/tenantctl" serve </dev/null >"$DEMO/tenantctl.log" 2>&1 &
  echo $! >"$DEMO/tenantctl.pid"
  wait_http "http://$CONTROL_LISTEN/healthz" "tenantctl serve" "$DEMO/tenantctl.log"
  nohup "$BIN/tenant-router" </dev/null >"$DEMO/tenant-router.log" 2>&1 &
  echo $! >"$DEMO/tenant-router.pid"
  wait_http "http://$ROUTER_ADMIN/healthz" "tenant-router" "$DEMO/tenant-router.log"
  # A token for the console (admin: every page, tokens too), kept in a file only you can read
  # (the demo's catalog is new on every run, so is the token).
  (umask 077; "$BIN/tenantctl" tokens create --name demo-console --scope admin >"$DEMO/console-token" 2>/dev/null)

  step "Provisioning three tenants with signed billing webhooks (customer.subscription.created)"
  "$BIN/tenantctl" webhook send --slug acme --name "Acme Corp" --plan starter
  "$BIN/tenantctl" webhook send --slug globex --name "Globex" --plan pro
  "$BIN/tenantctl" webhook send --slug initech --name "Initech" --plan enterprise

  step "Waiting until they are active"
  local active=0
  for _ in $(seq 1 300); do
    active="$("$BIN/tenantctl" tenants list --status active --json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')"
    [[ "$active" == 3 ]] && break
    sleep 0.1
  done
  [[ "$active" == 3 ]] || { "$BIN/tenantctl" tenants list; die "tenants did not become active (log: $DEMO/tenantctl.log)"; }
  "$BIN/tenantctl" tenants list

  step "Each tenant's subdomain through the router: its own role, its own database (demo_tenants holds the schema tenants, initech has its own), its own rows"
  for pair in acme:Ada globex:Grace initech:Linus; do
    local slug="${pair%%:*}" person="${pair##*:}"
    sql "$slug" "{\"query\":\"INSERT INTO users (email, name) VALUES (\$1, \$2)\",\"params\":[\"${person,,}@$slug.example\",\"$person\"]}" >/dev/null
  done
  for slug in acme globex initech; do
    echo "   POST http://$slug.$BASE_DOMAIN/sql  SELECT current_user, current_database(), name, email FROM users"
    sql "$slug" '{"query":"SELECT current_user AS role, current_database() AS database, name, email FROM users"}' | pretty_rows
  done
  echo "   acme reaching into globex's schema (SELECT * FROM t_globex.users):"
  sql acme '{"query":"SELECT * FROM t_globex.users"}' | pretty_rows
  echo "   acme changing its own role's password (ALTER ROLE CURRENT_USER PASSWORD ...):"
  sql acme '{"query":"ALTER ROLE CURRENT_USER PASSWORD '"'"'mine'"'"'"}' | pretty_rows

  step "Suspending globex (as a past_due subscription would): every router refuses it at once"
  "$BIN/tenantctl" tenants suspend globex >/dev/null
  printf '   globex after suspension: HTTP %s\n' "$(sql_status globex)"
  "$BIN/tenantctl" tenants resume globex >/dev/null
  printf '   globex after resumption: HTTP %s\n' "$(sql_status globex)"

  step "psql through the router's PostgreSQL listener ($ROUTER_PG_ADDR): acme named by options, its password checked with SCRAM"
  local acme_url acme_user acme_password acme_db
  acme_url="$("$BIN/tenantctl" tenants connection-string acme)"
  read -r acme_user acme_password acme_db < <(python3 -c 'import sys, urllib.parse as u; p = u.urlparse(sys.argv[1]); print(u.unquote(p.username), u.unquote(p.password), p.path.lstrip("/"))' "$acme_url")
  echo "   psql \"host=${ROUTER_PG_ADDR%:*} port=${ROUTER_PG_ADDR##*:} user=$acme_user dbname=$acme_db options='-c tenant=acme'\" -c 'SELECT current_user, name, email FROM users'"
  PGPASSWORD="$acme_password" "$psql" -X \
    "host=${ROUTER_PG_ADDR%:*} port=${ROUTER_PG_ADDR##*:} user=$acme_user dbname=$acme_db options='-c tenant=acme' sslmode=disable" \
    -c 'SELECT current_user, name, email FROM users' | sed 's/^/   /'

  step "Upgrading globex to enterprise by billing webhook (customer.subscription.updated): it moves, while in use, into a database of its own, its rows with it"
  "$BIN/tenantctl" webhook send --type customer.subscription.updated --tenant globex --plan enterprise >/dev/null
  local isolation=""
  for _ in $(seq 1 600); do
    isolation="$("$BIN/tenantctl" tenants show globex --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["isolation"])')"
    [[ "$isolation" == database ]] && break
    sleep 0.1
  done
  [[ "$isolation" == database ]] || die "globex was not moved to a database of its own (log: $DEMO/tenantctl.log)"
  echo "   tenantctl tenants moves globex:"
  "$BIN/tenantctl" tenants moves globex | sed 's/^/   /'
  echo "   POST http://globex.$BASE_DOMAIN/sql  SELECT current_user, current_database(), name, email FROM users"
  sql globex '{"query":"SELECT current_user AS role, current_database() AS database, name, email FROM users"}' | pretty_rows

  step "Adding a migration (V2__demo_task_priority.sql) and applying it to the whole fleet"
  cat >"$DEMO/migrations/V2__demo_task_priority.sql" <<'SQL'
ALTER TABLE tasks ADD COLUMN priority smallint NOT NULL DEFAULT 0;
CREATE INDEX tasks_priority ON tasks (priority);
SQL
  echo "   tenantctl migrate plan (what would happen; changes nothing):"
  "$BIN/tenantctl" migrate plan | sed 's/^/   /'
  echo "   tenantctl migrate apply --canary 1 --concurrency 2:"
  "$BIN/tenantctl" migrate apply --canary 1 --concurrency 2 | sed 's/^/   /'
  echo "   tenantctl migrate status (the fleet ledger):"
  "$BIN/tenantctl" migrate status --all | sed 's/^/   /'
  echo "   acme's tasks table now has priority:"
  # shellcheck disable=SC2016 # $1 and $2 are SQL parameters, not shell variables
  sql acme '{"query":"SELECT column_name FROM information_schema.columns WHERE table_name = $1 AND column_name = $2","params":["tasks","priority"]}' | pretty_rows

  step "Done. Everything is still running; try:"
  cat <<EOF_SUMMARY
   console         http://$CONTROL_LISTEN/console  (sign in with the token in $DEMO/console-token)
   control plane   http://$CONTROL_LISTEN  (healthz, readyz, POST /v1/webhooks/billing)
   router          http://$ROUTER_LISTEN_ADDR  (POST /sql with Host: <slug>.$BASE_DOMAIN)
   router admin    http://$ROUTER_ADMIN  (healthz, readyz)
   router (psql)   $ROUTER_PG_ADDR  (user, password: tenantctl tenants connection-string <slug>; options='-c tenant=<slug>')
   logs            $DEMO/tenantctl.log, $DEMO/tenant-router.log

   set -a; . .local/demo/env; set +a           # point tenantctl at the demo
   target/debug/tenantctl tenants list
   target/debug/tenantctl tenants show acme
   target/debug/tenantctl webhook send --slug hooli --plan pro
   target/debug/tenantctl tenants create --slug umbrella --plan starter
   target/debug/tenantctl tenants set-plan acme --plan pro
   target/debug/tenantctl tenants rotate-credentials acme
   target/debug/tenantctl tenants delete umbrella --retention 0s
   curl -s http://$ROUTER_LISTEN_ADDR/sql -H 'Host: acme.$BASE_DOMAIN' \\
     -H "Neon-Connection-String: \$(target/debug/tenantctl tenants connection-string acme)" \\
     -d '{"query":"SELECT * FROM users"}'
   make stop                                    # stop the servers and the services
EOF_SUMMARY
}

case "${1:-run}" in
  run) run ;;
  stop)
    stop_servers
    scripts/services.sh down
    ;;
  *) die "usage: $0 run|stop" ;;
esac
